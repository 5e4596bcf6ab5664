// The Fastify side of the upstream stage: @fastify/http-proxy (on @fastify/reply-from and an
// undici Agent) registered in the pipeline scope, so every proxied request and WebSocket upgrade
// has passed the stage hooks first. The request URL it forwards is the normalized one
// (Fastify's rewriteUrl), the headers are the header stage's, the origin the upstream stage's.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import httpProxy from '@fastify/http-proxy';
import { Agent, Pool, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { UpstreamStage } from './stage.js';
import { page } from '../../http/pages.js';
import { sendRespond } from '../../pipeline/fastify.js';

export interface UpstreamTransportOptions {
  connections: number;
  timeoutSeconds: number;
}

/** One pool per origin; TLS is verified unless the origin is an internal_host that opted out. */
export function createDispatcher(stage: UpstreamStage, opts: UpstreamTransportOptions): Agent {
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

export async function registerUpstream(scope: FastifyInstance, stage: UpstreamStage): Promise<void> {
  const dispatcher = createDispatcher(stage, stage.transport);
  scope.addHook('onClose', async () => {
    await dispatcher.close();
  });
  await scope.register(httpProxy, {
    upstream: '',
    prefix: '/',
    websocket: true,
    undici: dispatcher as unknown as object,
    // reply-from retries GETs on 503 (up to 10 times, with delays) and on connection resets; a
    // proxy in front of an app should not. `maxRetriesOn503: 0` does not turn this off (reply-from
    // reads it as `opts.maxRetriesOn503 || 10`); an empty retryMethods does.
    retryMethods: [],
    // reply-from logs two info lines per proxied request ('fetching from remote server',
    // 'response received'); the outpost writes its own one line per request (outpost.ts).
    disableRequestLogging: true,
    replyOptions: {
      // Per call (reply-from reads it from the reply options): headers and body inactivity.
      timeout: stage.transport.timeoutSeconds * 1000,
      getUpstream: (request: FastifyRequest) => request.portcullis!.upstream!.origin,
      rewriteRequestHeaders: (request: FastifyRequest) => request.portcullis!.upstreamHeaders as IncomingHttpHeaders,
      rewriteHeaders: (headers: Record<string, string | string[] | undefined>, request: FastifyRequest) => {
        const cookies = request?.portcullis?.setCookies;
        if (cookies) {
          const existing = headers['set-cookie'];
          headers['set-cookie'] = existing === undefined ? cookies : ([] as string[]).concat(existing, cookies);
        }
        return headers;
      },
      onError: (reply: FastifyReply, { error }: { error: Error & { statusCode?: number; code?: string } }) => {
        const request = reply.request;
        const ctx = request.portcullis;
        const timedOut = error.statusCode === 504 || /timeout/i.test(error.code ?? '') || /timeout/i.test(error.message);
        request.log.warn({ err: { message: error.message, code: error.code }, upstream: ctx?.upstream?.origin }, timedOut ? 'upstream timed out' : 'upstream failed');
        if (reply.sent) return;
        const superuser = ctx?.session?.claims.ak_proxy?.is_superuser === true;
        sendRespond(
          reply,
          ctx,
          page({
            status: timedOut ? 504 : 502,
            title: timedOut ? 'Gateway Timeout' : 'Bad Gateway',
            message: timedOut
              ? 'The application did not answer in time.'
              : superuser
                ? `Failed to connect to the application: ${error.message}`
                : 'Failed to connect to the application.',
            requestId: request.id,
            wantsJson: ctx?.wantsJson ?? false,
            code: timedOut ? 'upstream.timeout' : 'upstream.unreachable',
          }),
        );
      },
    },
    wsClientOptions: {
      rewriteRequestHeaders: (_headers: Record<string, string>, request: FastifyRequest) => {
        const out: Record<string, string> = {};
        const src = request.portcullis?.upstreamHeaders ?? {};
        for (const name in src) if (!name.startsWith('sec-websocket-')) out[name] = src[name]!;
        return out;
      },
    },
  } as never);
}
