// Scenario 6: a Fastify hello-world route, the floor for a decision endpoint.
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { childMain } from '../../lib/proc.js';

const app = Fastify({ logger: false });
app.get('/*', (_req, reply) => reply.header('cache-control', 'no-store').send('hello world'));
const child = childMain({}, () => app.close());
await app.listen({ host: '127.0.0.1', port: 0 });
child.ready({ port: (app.server.address() as AddressInfo).port });
