// Scenarios 6 and 9: a Fastify hello-world route, the floor for a decision endpoint. With
// `headers` in its config (scenario 9) it answers with those headers too — the same identity
// headers the auth/nginx decision sends — so the two differ only in the work Portcullis does.
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { childMain } from '../../lib/proc.js';

const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}') as { headers?: Record<string, string> };
const extra = config.headers ?? {};
const app = Fastify({ logger: false });
app.get('/*', (_req, reply) => reply.header('cache-control', 'no-store').headers(extra).send(config.headers ? '' : 'hello world'));
const child = childMain({}, () => app.close());
await app.listen({ host: '127.0.0.1', port: 0 });
child.ready({ port: (app.server.address() as AddressInfo).port });
