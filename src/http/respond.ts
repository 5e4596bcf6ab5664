// Writes a complete answer (a stage's, an exit's, an error page) to the client: one writeHead +
// end, with the cookies the request's stages asked to set. Shared by the pipeline's hook, the
// error handler and the upstream transport's failure pages.
import type { FastifyReply } from 'fastify';
import type { RequestContext, Respond } from '../pipeline/contract.js';
import { HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

/**
 * Writes a stage's answer, with any cookies a stage asked to set. The answer is complete (status,
 * headers, body are all known), so it is written to the socket in one `writeHead` + `end` with
 * the headers as a flat list — cached per headers object, since stages reuse frozen answers
 * (a forward-auth decision is the same for every request of a session). Fastify's onResponse
 * hooks (the request log) still run.
 */
export function sendRespond(reply: FastifyReply, ctx: RequestContext | null, out: Respond): FastifyReply {
  const body = out.body ?? '';
  const headers = (out.headers === undefined ? EMPTY : flatHeaders(out.headers)).slice();
  const cookies = ctx?.setCookies;
  if (cookies) for (const c of cookies) headers.push('set-cookie', c);
  headers.push('content-length', String(Buffer.byteLength(body)));
  // HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2; Node throws on them): a stage
  // that sets one for HTTP/1.1 still answers h2 clients.
  if (reply.request.raw.httpVersionMajor === 2) dropHopByHop(headers);
  reply.hijack();
  reply.raw.writeHead(out.status, headers);
  reply.raw.end(body);
  return reply;
}

function dropHopByHop(list: string[]): void {
  for (let i = list.length - 2; i >= 0; i -= 2) if (HOP_BY_HOP_HEADERS.has(list[i]!.toLowerCase())) list.splice(i, 2);
}

const EMPTY: readonly string[] = Object.freeze([]);
const flattened = new WeakMap<object, readonly string[]>();

function flatHeaders(headers: Readonly<Record<string, string | string[]>>): readonly string[] {
  let list = flattened.get(headers);
  if (list === undefined) {
    const out: string[] = [];
    for (const name in headers) {
      const v = headers[name]!;
      if (typeof v === 'string') out.push(name, v);
      else for (const one of v) out.push(name, one);
    }
    list = Object.freeze(out);
    // Only frozen answers are reused by stages; others are built per request.
    if (Object.isFrozen(headers)) flattened.set(headers, list);
  }
  return list;
}
