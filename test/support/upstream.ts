/**
 * A real upstream application for tests: echoes every request as JSON, records it, and
 * speaks WebSocket (hello + echo).
 *
 *  - any request → 200 `{ name, method, url, headers }` (headers as received, lower-case)
 *  - `GET /slow?ms=N` → waits N ms first
 *  - `GET /status/NNN` → answers with status NNN (same JSON body unless the status forbids one)
 *  - WebSocket upgrade on any path → first message `{ type: 'hello', url, headers }`, then echo
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { generate } from 'selfsigned';
import { WebSocketServer, type WebSocket } from 'ws';

export interface SeenRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
  rawHeaders: string[];
}

export interface RunningUpstream {
  /** `http://127.0.0.1:port` (or `https://…` with `tls`). */
  url: string;
  port: number;
  /** Every request seen, WebSocket upgrade requests included, in arrival order. */
  requests: SeenRequest[];
  close(): Promise<void>;
}

export interface StartUpstreamOptions {
  port?: number;
  tls?: { key: string; cert: string };
  /** Reported as `name` in every response. Default `upstream`. */
  name?: string;
}

function headersOf(req: http.IncomingMessage): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) out[k] = v;
  return out;
}

function record(req: http.IncomingMessage): SeenRequest {
  return { method: req.method ?? 'GET', url: req.url ?? '/', headers: headersOf(req), rawHeaders: [...req.rawHeaders] };
}

export async function startUpstream(opts: StartUpstreamOptions = {}): Promise<RunningUpstream> {
  const name = opts.name ?? 'upstream';
  const requests: SeenRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const onRequest: http.RequestListener = (req, res) => {
    const seen = record(req);
    requests.push(seen);
    // Read the request body (its size and hash are reported) before answering.
    const hash = createHash('sha256');
    let bodyLength = 0;
    req.on('data', (chunk: Buffer) => {
      bodyLength += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://upstream.invalid');
      let status = 200;
      let delay = 0;
      const statusMatch = /^\/status\/(\d{3})\/?$/.exec(u.pathname);
      if (statusMatch) status = Number(statusMatch[1]);
      if (u.pathname === '/slow') delay = Math.max(0, Math.min(Number(u.searchParams.get('ms') ?? '0') || 0, 120_000));
      if (u.pathname === '/bytes') {
        // A large streamed answer: N bytes in 64 KiB chunks, honouring back-pressure.
        const total = Math.min(Number(u.searchParams.get('n') ?? '0') || 0, 64 * 1024 * 1024);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        let sent = 0;
        const pump = () => {
          while (sent < total) {
            const n = Math.min(chunk.length, total - sent);
            sent += n;
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      const respond = () => {
        if (res.destroyed) return;
        const noBody = status === 204 || status === 304 || (status >= 100 && status < 200) || req.method === 'HEAD';
        const body = JSON.stringify({ name, method: seen.method, url: seen.url, headers: seen.headers, bodyLength, bodySha256: hash.digest('hex') });
        res.statusCode = status;
        if (u.pathname === '/set-cookie') res.setHeader('Set-Cookie', ['app_session=abc; Path=/; HttpOnly', 'app_pref=dark; Path=/']);
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.setHeader('X-Upstream-Name', name);
        if (noBody) {
          res.end();
        } else {
          res.setHeader('Content-Length', Buffer.byteLength(body));
          res.end(body);
        }
      };
      if (delay > 0) {
        const t = setTimeout(() => {
          timers.delete(t);
          respond();
        }, delay);
        timers.add(t);
      } else {
        respond();
      }
    });
  };

  const server: http.Server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onRequest) : http.createServer(onRequest);

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const seen = record(req);
    requests.push(seen);
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      ws.send(JSON.stringify({ type: 'hello', url: seen.url, headers: seen.headers }));
      ws.on('message', (data, isBinary) => {
        ws.send(data, { binary: isBinary });
      });
      ws.on('error', () => {});
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** A loopback port with nothing listening on it (bound briefly, then released). */
export async function startClosedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/**
 * A self-signed certificate (RSA 2048, SHA-256) for `hosts` (DNS names and/or IP addresses;
 * the first one is the common name). Async: `selfsigned` v5 only has an async API.
 */
export async function selfSignedCert(hosts: string[]): Promise<{ key: string; cert: string }> {
  const names = hosts.length ? hosts : ['localhost'];
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(Date.now() + 365 * 24 * 3600 * 1000);
  const pems = await generate([{ name: 'commonName', value: names[0]! }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: names.map((h) => (net.isIP(h) ? { type: 7 as const, ip: h } : { type: 2 as const, value: h })),
      },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}
