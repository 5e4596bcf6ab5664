// Writes a complete answer (a stage's, an exit's, an error page) to the client: one writeHead +
// end, with the cookies the request's stages asked to set. Shared by the pipeline's hook, the
// error handler and the upstream transport's failure pages.
import type { FastifyReply } from 'fastify';
import type { RequestContext, Respond } from '../pipeline/contract.js';
import { HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

/**
 * Writes a stage's answer, with any cookies a stage asked to set. The answer is complete (status,
 * headers, body are all known), so it is written to the socket in one `writeHead` + `end` with
 * the headers as a flat list (made once for a frozen answer). Fastify's onResponse hooks (the
 * request log) still run.
 */
export function sendRespond(reply: FastifyReply, ctx: RequestContext | null, out: Respond): FastifyReply {
  let headers = headerList(out);
  const cookies = ctx?.setCookies;
  if (cookies) {
    const withCookies = headers.slice();
    for (const c of cookies) withCookies.push('set-cookie', c);
    headers = withCookies;
  }
  // HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2; Node throws on them): a stage
  // that sets one for HTTP/1.1 still answers h2 clients.
  if (reply.request.raw.httpVersionMajor === 2) headers = withoutHopByHop(headers);
  reply.hijack();
  reply.raw.writeHead(out.status, headers as string[]);
  reply.raw.end(out.body ?? '');
  return reply;
}

function withoutHopByHop(list: readonly string[]): readonly string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (!HOP_BY_HOP_HEADERS.has(list[i]!.toLowerCase())) out.push(list[i]!, list[i + 1]!);
  return out;
}

const complete = new WeakMap<Respond, readonly string[]>();

/**
 * The answer's headers as a flat list, Content-Length included. Stages reuse frozen answers (a
 * forward-auth decision is the same for every request of a session): the list of a frozen answer
 * is made once.
 */
function headerList(out: Respond): readonly string[] {
  // Only frozen answers are kept, and a frozen object stays frozen: a hit needs no check.
  let list = complete.get(out);
  if (list === undefined) {
    const made: string[] = [];
    const headers = out.headers ?? {};
    for (const name in headers) {
      const v = headers[name]!;
      if (typeof v === 'string') made.push(name, v);
      else for (const one of v) made.push(name, one);
    }
    made.push('content-length', String(Buffer.byteLength(out.body ?? '')));
    list = made;
    if (Object.isFrozen(out) && (out.headers === undefined || Object.isFrozen(out.headers))) complete.set(out, Object.freeze(made));
  }
  return list;
}
