// The HTTP transport of the upstream stage: one undici dispatch per request, the response
// streamed straight into the client's socket.
//
// @fastify/reply-from (under @fastify/http-proxy) copies the request headers twice, rebuilds the
// URL, wraps retries and pipes the body through a Readable into reply.send; profiles of the proxy
// under load showed that plumbing, not Portcullis's stages, as the cost. Here the headers the
// header stage built go to undici as they are, and undici's handler callbacks write the status,
// headers and body chunks to the raw response with back-pressure. @fastify/http-proxy still owns
// routing, body parsing (bodies are streamed, never buffered) and WebSocket upgrades.
import { Stream } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import type { RequestContext } from '../../pipeline/contract.js';
import { page } from '../../http/pages.js';
import { HOP_BY_HOP_HEADERS } from '../../http/hop-by-hop.js';
import { sendRespond } from '../../pipeline/fastify.js';


export interface TransportOptions {
  dispatcher: Dispatcher;
  timeoutMs: number;
}

export function createForwarder(opts: TransportOptions) {
  const { dispatcher, timeoutMs } = opts;

  return function forward(request: FastifyRequest, reply: FastifyReply): void {
    const ctx = request.portcullis!;
    const target = ctx.upstream!;
    const res = reply.raw;
    const t = ctx.target;
    const body = requestBody(request);
    reply.hijack();

    let resume: (() => void) | null = null;
    const onDrain = () => resume?.();
    let aborted = false;
    let abortUpstream: ((err?: Error) => void) | null = null;
    const onClientClose = () => {
      // The client went away before the answer was complete: stop the upstream request too.
      if (!res.writableFinished) {
        aborted = true;
        abortUpstream?.(new Error('client closed the connection'));
      }
    };
    res.on('close', onClientClose);

    dispatcher.dispatch(
      {
        origin: target.origin,
        path: t.query === '' ? t.path : `${t.path}?${t.query}`,
        method: request.method as Dispatcher.HttpMethod,
        headers: ctx.upstreamHeaders!,
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      },
      {
        onConnect(abort: (err?: Error) => void) {
          abortUpstream = abort;
          if (aborted) abort(new Error('client closed the connection'));
        },
        onHeaders(statusCode: number, rawHeaders: Buffer[], resumeUpstream: () => void): boolean {
          const out: string[] = [];
          for (let i = 0; i < rawHeaders.length; i += 2) {
            const name = rawHeaders[i]!.toString('latin1');
            if (HOP_BY_HOP_HEADERS.has(name.toLowerCase())) continue;
            out.push(name, rawHeaders[i + 1]!.toString('latin1'));
          }
          if (ctx.setCookies !== null) for (const c of ctx.setCookies) out.push('set-cookie', c);
          res.writeHead(statusCode, out);
          resume = resumeUpstream;
          return true;
        },
        onData(chunk: Buffer): boolean {
          if (res.write(chunk)) return true;
          // Back-pressure: undici pauses until the client has taken what was written.
          res.once('drain', onDrain);
          return false;
        },
        onComplete() {
          res.removeListener('close', onClientClose);
          res.end();
        },
        onError(err: Error & { code?: string }) {
          res.removeListener('close', onClientClose);
          if (aborted) return;
          if (res.headersSent) {
            // The answer had begun: the only honest signal left is a cut connection.
            res.destroy(err);
            return;
          }
          failed(request, reply, ctx, err);
        },
        onUpgrade() {
          // Upgrades go through the WebSocket proxy, never here.
          res.destroy();
        },
      } as unknown as Dispatcher.DispatchHandler,
    );
  };
}

function requestBody(request: FastifyRequest): Dispatcher.DispatchOptions['body'] {
  const b = request.body as unknown;
  if (b === undefined || b === null) return null;
  if (b instanceof Stream) return b as unknown as Dispatcher.DispatchOptions['body'];
  if (typeof b === 'string' || Buffer.isBuffer(b)) return b;
  return JSON.stringify(b);
}

function failed(request: FastifyRequest, reply: FastifyReply, ctx: RequestContext, err: Error & { code?: string }): void {
  const timedOut = err.code === 'UND_ERR_HEADERS_TIMEOUT' || err.code === 'UND_ERR_BODY_TIMEOUT' || err.code === 'UND_ERR_CONNECT_TIMEOUT';
  request.log.warn({ err: { message: err.message, code: err.code }, upstream: ctx.upstream?.origin }, timedOut ? 'upstream timed out' : 'upstream failed');
  const superuser = ctx.session?.claims.ak_proxy?.is_superuser === true;
  sendRespond(
    reply,
    ctx,
    page({
      status: timedOut ? 504 : 502,
      title: timedOut ? 'Gateway Timeout' : 'Bad Gateway',
      message: timedOut ? 'The application did not answer in time.' : superuser ? `Failed to connect to the application: ${err.message}` : 'Failed to connect to the application.',
      requestId: request.id,
      wantsJson: ctx.wantsJson,
      code: timedOut ? 'upstream.timeout' : 'upstream.unreachable',
    }),
  );
}
