// The one small upstream of every end-to-end scenario: a plain node:http server answering a
// fixed 64-byte JSON body. `/__echo` answers the request headers instead (probes only).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { benchConfig, childMain } from '../../lib/proc.js';

const { port = 0 } = benchConfig<{ port?: number }>();
const body = Buffer.from(JSON.stringify({ ok: true, app: 'bench-upstream', pad: 'x'.repeat(20) }));

const server = http.createServer((req, res) => {
  if (req.url === '/__echo') {
    const echo = Buffer.from(JSON.stringify({ url: req.url, headers: req.headers }));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': echo.length });
    res.end(echo);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 65_000;

const child = childMain({}, async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});
server.listen(port, '127.0.0.1', () => child.ready({ port: (server.address() as AddressInfo).port }));
