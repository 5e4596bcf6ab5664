// The Fastify side of the upstream exit: @fastify/http-proxy registered in the pipeline scope,
// so every proxied request and WebSocket upgrade has passed the door's hook (context, chain, exit) first. It routes,
// streams request bodies and proxies WebSocket upgrades; HTTP requests are forwarded by
// Portcullis's own transport (transport.ts) through one undici Agent with a pool per origin.
// What is forwarded: the normalized path (Fastify's rewriteUrl), the header stage's header list,
// the upstream stage's origin.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import httpProxy from '@fastify/http-proxy';
import { Agent, Pool, type Dispatcher } from 'undici';
import type { UpstreamExit } from './exit.js';
import { createForwarder } from './transport.js';
import { ROUTED_METHODS } from '../../http/methods.js';
import type { ClosableWebSocket } from '../../server/websockets.js';
import type { RequestContext } from '../../pipeline/contract.js';

export interface UpstreamTransportOptions {
  connections: number;
  timeoutSeconds: number;
}

/** One pool per origin; TLS is verified unless the origin is an internal_host that opted out. */
export function createDispatcher(stage: UpstreamExit, opts: UpstreamTransportOptions): Agent {
  const insecure = new Set(stage.providers.all.filter((p) => p.internalOrigin && !p.internalTlsVerify).map((p) => p.internalOrigin!));
  return new Agent({
    connections: opts.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    factory: (origin: string | URL, options: object): Dispatcher => {
      const key = typeof origin === 'string' ? new URL(origin).origin : origin.origin;
      return new Pool(origin, { ...(options as Pool.Options), connect: { rejectUnauthorized: !insecure.has(key) } });
    },
  });
}

/** The context of each upgraded request, by its TCP socket (for the WebSocket registry). */
const upgradeContexts = new WeakMap<object, RequestContext>();

export async function registerUpstream(scope: FastifyInstance, stage: UpstreamExit): Promise<void> {
  const dispatcher = createDispatcher(stage, stage.transport);
  scope.addHook('onClose', async () => {
    await dispatcher.close();
  });
  const forward = createForwarder({ dispatcher, timeoutMs: stage.transport.timeoutSeconds * 1000 });
  // @fastify/http-proxy's route handler rebuilds and checks the destination on every request
  // (a query parse and stringify, three URL objects: 3-4% of a proxied request in the profiles).
  // Portcullis has decided on its own normalized target already (context.ts), and forwards that:
  // plain requests go straight to the transport; only WebSocket upgrades, which arrive through
  // the plugin's upgrade listener (`req.upgrade`), take the plugin's handler to its WebSocket proxy.
  scope.addHook('onRoute', (route) => {
    if (route.url !== '/' && route.url !== '/*') return;
    const upgrades = route.handler as (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => unknown;
    route.handler = function proxyDoorHandler(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      if ((request.raw as { upgrade?: boolean }).upgrade === true) return upgrades.call(this, request, reply);
      forward(request, reply);
    };
  });
  await scope.register(httpProxy, {
    upstream: '',
    prefix: '/',
    websocket: true,
    // Every method goes through the same chain and is proxied (TRACE is refused by the exit).
    httpMethods: [...ROUTED_METHODS],
    // HTTP requests go through Portcullis's own transport (transport.ts); @fastify/http-proxy
    // keeps routing, streamed bodies and WebSocket upgrades.
    handler: (request: FastifyRequest, reply: FastifyReply) => forward(request, reply),
    undici: dispatcher as unknown as object,
    disableRequestLogging: true,
    replyOptions: {
      // Where WebSocket upgrades connect to (the upstream exit's choice).
      getUpstream: (request: FastifyRequest) => request.portcullis!.upstream!.origin,
    },
    // Every proxied WebSocket is known to the outpost, so that a shutdown closes it with 1001.
    // Each is registered with the session it was opened for (see websockets.ts: sign-out, expiry,
    // idle timeout). The hooks get the sockets but not the request, so the request's context is
    // found through the client's TCP socket, noted when the upstream connection is made.
    wsHooks: {
      onConnect: (_ctx: unknown, source: ClosableWebSocket, target: ClosableWebSocket) => {
        const ctx = upgradeContexts.get((source as { _socket?: object })._socket ?? source);
        const s = ctx?.session ?? null;
        stage.websockets.add(source, s === null ? null : { id: s.id, userKey: s.userKey, expiresAt: s.expiresAt, stored: ctx!.headerAuth !== 'accepted' }, target);
      },
      onDisconnect: (_ctx: unknown, source: ClosableWebSocket) => stage.websockets.delete(source),
    },
    wsClientOptions: {
      rewriteRequestHeaders: (_headers: Record<string, string>, request: FastifyRequest) => {
        if (request.portcullis !== null) upgradeContexts.set(request.raw.socket, request.portcullis);
        const out: Record<string, string> = {};
        const list = request.portcullis?.upstreamHeaders ?? [];
        for (let i = 0; i < list.length; i += 2) {
          const name = list[i]!;
          // The WebSocket client makes its own handshake headers.
          if (!name.startsWith('sec-websocket-')) out[name] = out[name] === undefined ? list[i + 1]! : `${out[name]}, ${list[i + 1]}`;
        }
        return out;
      },
    },
  } as never);
}
