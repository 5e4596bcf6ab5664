// The HTTP transport of the upstream stage: one undici dispatch per request, the response
// streamed straight into the client's socket.
//
// @fastify/reply-from (under @fastify/http-proxy) copies the request headers twice, rebuilds the
// URL, wraps retries and pipes the body through a Readable into reply.send; profiles of the proxy
// under load showed that plumbing, not Portcullis's stages, as the cost. Here the headers the
// header stage built go to undici as they are, and undici's handler callbacks write the status,
// headers and body chunks to the raw response with back-pressure. @fastify/http-proxy still owns
// routing, body parsing (bodies are streamed, never buffered) and WebSocket upgrades.
import type { ServerResponse } from 'node:http';
import { Stream } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import type { RequestContext } from '../../pipeline/contract.js';
import { page } from '../../http/pages.js';
import { HOP_BY_HOP_HEADERS } from '../../http/hop-by-hop.js';
import { sendRespond } from '../../http/respond.js';


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
    /** The final status written to the client (0 until then). */
    let status = 0;
    const onClientClose = () => {
      // The client went away before the answer was complete: stop the upstream request too.
      if (!res.writableFinished) {
        aborted = true;
        abortUpstream?.(new Error('client closed the connection'));
      }
    };
    res.on('close', onClientClose);
    // `Expect: 100-continue`: the server leaves the answer to us (see outpost.ts), so the client
    // is told to send its body only now, when every stage has let the request through.
    if (expectsContinue(request.headers.expect)) res.writeContinue();

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
          if (statusCode < 200) {
            // An interim answer (undici calls onHeaders again with the final one). 103 Early
            // Hints are passed on when they carry Link headers; other 1xx concern only the hop.
            if (statusCode === 103) earlyHints(res, rawHeaders);
            return true;
          }
          const out = answerHeaders(rawHeaders);
          // A 204 has no body and must not carry Content-Length (RFC 9110 §8.6): an upstream's is dropped.
          if (statusCode === 204) dropContentLength(out);
          if (ctx.setCookies !== null) for (const c of ctx.setCookies) out.push('set-cookie', c);
          res.writeHead(statusCode, out);
          status = statusCode;
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
            if (err.code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' && (status === 204 || status === 304)) {
              // undici checks Content-Length against the body even where the status has none
              // (a 304 may state the representation's length). The answer is complete; undici
              // drops the upstream connection, whose framing can no longer be trusted.
              res.end();
              return;
            }
            // The answer had begun: the only honest signal left is a cut connection.
            request.log.warn({ reqId: request.id, path: t.path, err: { message: err.message, code: err.code }, upstream: target.origin, status }, 'upstream answer cut: client connection closed');
            res.destroy(err);
            return;
          }
          failed(request, reply, ctx, err);
        },
        onUpgrade() {
          // Upgrades go through the WebSocket proxy, never here.
          request.log.warn({ reqId: request.id, path: t.path, upstream: target.origin }, 'upstream switched protocols on a plain request: client connection closed');
          res.destroy();
        },
      } as unknown as Dispatcher.DispatchHandler,
    );
  };
}

function expectsContinue(v: string | undefined): boolean {
  return v !== undefined && v.length === 12 && v.toLowerCase() === '100-continue';
}

/** Passes a 103 on to the client with its Link headers (Node sends nothing else in one). */
function earlyHints(res: ServerResponse, rawHeaders: Buffer[]): void {
  const links: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toString('latin1').toLowerCase() === 'link') links.push(rawHeaders[i + 1]!.toString('latin1'));
  if (links.length === 0) return;
  try {
    res.writeEarlyHints({ link: links });
  } catch {
    // A Link value Node refuses: the hint is dropped, the final answer follows as usual.
  }
}

function dropContentLength(out: string[]): void {
  for (let i = out.length - 2; i >= 0; i -= 2) if (out[i]!.toLowerCase() === 'content-length') out.splice(i, 2);
}

/**
 * The upstream's answer headers as a flat list for the client: without hop-by-hop headers, and
 * without the headers its `Connection` header names (RFC 9110 §7.6.1) — a proxy that passed
 * them on would let the upstream address the client's connection.
 */
export function answerHeaders(rawHeaders: Buffer[]): string[] {
  const out: string[] = [];
  let listed: Set<string> | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toString('latin1');
    const lower = name.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(lower)) {
      if (lower === 'connection') listed = connectionOptions(rawHeaders[i + 1]!.toString('latin1'), listed);
      continue;
    }
    out.push(name, rawHeaders[i + 1]!.toString('latin1'));
  }
  if (listed === null) return out;
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) if (!listed.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
  return kept;
}

/** The header names a Connection value lists (`close` and `keep-alive` name no header). */
function connectionOptions(value: string, into: Set<string> | null): Set<string> | null {
  for (const part of value.split(',')) {
    const token = part.trim().toLowerCase();
    if (token === '' || token === 'close' || token === 'keep-alive') continue;
    (into ??= new Set()).add(token);
  }
  return into;
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
