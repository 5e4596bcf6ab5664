// Scenario 2: bare @fastify/http-proxy with its default options in front of the upstream.
import Fastify from 'fastify';
import httpProxy from '@fastify/http-proxy';
import type { AddressInfo } from 'node:net';
import { benchConfig, childMain } from '../../lib/proc.js';

const { upstream } = benchConfig<{ upstream: string }>();
const app = Fastify({ logger: false });
await app.register(httpProxy, { upstream, prefix: '/' });
const child = childMain({}, () => app.close());
await app.listen({ host: '127.0.0.1', port: 0 });
child.ready({ port: (app.server.address() as AddressInfo).port });
