// Scenario 18: the floor of Portcullis's proxy path — the same parts with no decision. A Fastify
// route hands each request to one undici dispatch (one Pool, pipelining 1, 128 connections, as
// Portcullis's transport) with the headers the upstream receives from Portcullis in scenario 3
// (identity headers, X-Forwarded-*), and streams the answer back as the transport does. What
// Portcullis spends beyond this is its own work: context, session, stages, header filtering.
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { Pool, type Dispatcher } from 'undici';
import { benchConfig, childMain } from '../../lib/proc.js';

const { upstream, headers } = benchConfig<{ upstream: string; headers: Record<string, string> }>();
const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });
const fixed = Object.entries(headers).flat();
const app = Fastify({ logger: false });
app.route({
  method: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'],
  url: '/*',
  handler: (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    pool.dispatch({ path: request.url, method: request.method as Dispatcher.HttpMethod, headers: fixed, body: null }, {
      onConnect() {},
      onHeaders(status: number, raw: Buffer[]) {
        const out: string[] = [];
        for (let i = 0; i < raw.length; i += 2) out.push(raw[i]!.toString('latin1'), raw[i + 1]!.toString('latin1'));
        res.writeHead(status, out);
        return true;
      },
      onData(chunk: Buffer) {
        return res.write(chunk);
      },
      onComplete() {
        res.end();
      },
      onError() {
        if (!res.headersSent) res.writeHead(502, { 'content-length': '0' });
        res.end();
      },
    } as unknown as Dispatcher.DispatchHandler);
  },
});
const child = childMain({}, async () => {
  await app.close();
  await pool.close();
});
await app.listen({ host: '127.0.0.1', port: 0 });
child.ready({ port: (app.server.address() as AddressInfo).port });
