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

const HOP_BY_HOP_LENGTHS: ReadonlySet<number> = new Set([...HOP_BY_HOP_HEADERS].map((n) => n.length));
import { sendRespond } from '../../http/respond.js';


export interface TransportOptions {
  dispatcher: Dispatcher;
  timeoutMs: number;
}

export function createForwarder(opts: TransportOptions) {
  const { dispatcher, timeoutMs } = opts;

  return function forward(request: FastifyRequest, reply: FastifyReply): void {
    const ctx = request.portcullis!;
    const t = ctx.target;
    const body = requestBody(request);
    reply.hijack();
    const answer = new UpstreamAnswer(request, reply, ctx);
    // `Expect: 100-continue`: the server leaves the answer to us (see outpost.ts), so the client
    // is told to send its body only now, when every stage has let the request through.
    if (expectsContinue(request.headers.expect)) reply.raw.writeContinue();
    dispatcher.dispatch(
      {
        origin: ctx.upstream!.origin,
        path: t.query === '' ? t.path : `${t.path}?${t.query}`,
        method: request.method as Dispatcher.HttpMethod,
        headers: ctx.upstreamHeaders!,
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      },
      answer as unknown as Dispatcher.DispatchHandler,
    );
  };
}

/**
 * One proxied request's undici handler: the upstream's answer written to the client as it comes.
 * A class, not closures: a request allocates one object, and its callbacks are shared methods.
 */
class UpstreamAnswer {
  private readonly res: ServerResponse;
  private abortUpstream: ((err?: Error) => void) | null = null;
  /** The client went away first. */
  private aborted = false;
  /** The final status written to the client (0 until then). */
  private status = 0;
  private resumeUpstream: (() => void) | null = null;
  private readonly clientClosed: () => void;
  /** Made at the first back-pressure only: most answers never wait for the client. */
  private drained: (() => void) | null = null;

  constructor(
    private readonly request: FastifyRequest,
    private readonly reply: FastifyReply,
    private readonly ctx: RequestContext,
  ) {
    this.res = reply.raw;
    this.clientClosed = this.onClientClose.bind(this);
    this.res.on('close', this.clientClosed);
  }

  private onClientClose(): void {
    // The client went away before the answer was complete: stop the upstream request too.
    if (!this.res.writableFinished) {
      this.aborted = true;
      this.abortUpstream?.(new Error('client closed the connection'));
    }
  }

  private onDrain(): void {
    this.resumeUpstream?.();
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.aborted) abort(new Error('client closed the connection'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resumeUpstream: () => void): boolean {
    const res = this.res;
    if (statusCode < 200) {
      // An interim answer (undici calls onHeaders again with the final one). 103 Early
      // Hints are passed on when they carry Link headers; other 1xx concern only the hop.
      if (statusCode === 103) earlyHints(res, rawHeaders);
      return true;
    }
    const out = answerHeaders(rawHeaders);
    // A 204 has no body and must not carry Content-Length (RFC 9110 §8.6): an upstream's is dropped.
    if (statusCode === 204) dropContentLength(out);
    const cookies = this.ctx.setCookies;
    if (cookies !== null) for (const c of cookies) out.push('set-cookie', c);
    res.writeHead(statusCode, out);
    this.status = statusCode;
    this.resumeUpstream = resumeUpstream;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true;
    // Back-pressure: undici pauses until the client has taken what was written.
    this.res.once('drain', (this.drained ??= this.onDrain.bind(this)));
    return false;
  }

  onComplete(): void {
    this.res.removeListener('close', this.clientClosed);
    this.res.end();
  }

  onError(err: Error & { code?: string }): void {
    const res = this.res;
    res.removeListener('close', this.clientClosed);
    if (this.aborted) return;
    if (res.headersSent) {
      if (err.code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' && (this.status === 204 || this.status === 304)) {
        // undici checks Content-Length against the body even where the status has none
        // (a 304 may state the representation's length). The answer is complete; undici
        // drops the upstream connection, whose framing can no longer be trusted.
        res.end();
        return;
      }
      // The answer had begun: the only honest signal left is a cut connection.
      this.request.log.warn({ reqId: this.request.id, path: this.ctx.target.path, err: { message: err.message, code: err.code }, upstream: this.ctx.upstream!.origin, status: this.status }, 'upstream answer cut: client connection closed');
      res.destroy(err);
      return;
    }
    failed(this.request, this.reply, this.ctx, err);
  }

  onUpgrade(): void {
    // Upgrades go through the WebSocket proxy, never here.
    this.request.log.warn({ reqId: this.request.id, path: this.ctx.target.path, upstream: this.ctx.upstream!.origin }, 'upstream switched protocols on a plain request: client connection closed');
    this.res.destroy();
  }
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
    const raw = rawHeaders[i]!;
    const name = raw.toString('latin1');
    // Only a name of a hop-by-hop header's length is lowercased and looked up.
    if (HOP_BY_HOP_LENGTHS.has(raw.length)) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP_HEADERS.has(lower)) {
        if (lower === 'connection') listed = connectionOptions(rawHeaders[i + 1]!.toString('latin1'), listed);
        continue;
      }
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
  // The usual values name no header: spare them the parsing.
  if (value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close') return into;
  }
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
