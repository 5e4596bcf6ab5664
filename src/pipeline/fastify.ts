// How the chain lives in Fastify: an encapsulated scope whose first onRequest hook builds the
// context and whose next hooks are the stages, each registered by its own plugin, in chain order.
// Decisions happen in onRequest, before any body is read; the proxied body is streamed.
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { RequestContext, Respond, Stage } from './contract.js';
import { CONTINUE } from './contract.js';
import { isPromise, type BuiltStage } from './chain.js';
import type { ContextFactory } from './context.js';
import { page } from '../http/pages.js';
import { HOP_BY_HOP_HEADERS } from '../http/hop-by-hop.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The pipeline's per-request context (null outside the pipeline's routes). */
    portcullis: RequestContext | null;
  }
}

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

/** The onRequest hook of one stage. Callback style: a sync stage costs no promise. */
export function stageHook(stage: Stage): onRequestHookHandler {
  return function portcullisStage(request, reply, done) {
    const ctx = request.portcullis;
    if (ctx === null) return done();
    let out;
    try {
      out = stage.run(ctx);
    } catch (err) {
      return done(err as Error);
    }
    if (out === CONTINUE) return done();
    if (isPromise(out)) {
      out.then(
        (o) => (o.kind === 'continue' ? done() : sendRespond(reply, ctx, o)),
        (err: Error) => done(err),
      );
      return;
    }
    if (out.kind === 'continue') return done();
    sendRespond(reply, ctx, out);
  };
}

/** The plugin of one stage: adds its hook to the pipeline scope, plus whatever Fastify parts it brings. */
export function stagePlugin(built: BuiltStage) {
  return fp(
    async (scope: FastifyInstance) => {
      scope.addHook('onRequest', stageHook(built.stage));
      if (built.definition.fastify) await built.definition.fastify(scope, built.stage);
    },
    { name: `portcullis-stage-${built.stage.name}`, fastify: '5.x' },
  );
}

export interface PipelineScopeOptions {
  stages: readonly BuiltStage[];
  contexts: ContextFactory;
}

/** The pipeline scope: context hook, then one plugin per stage. Encapsulated: nothing leaks. */
export async function pipelineScope(scope: FastifyInstance, opts: PipelineScopeOptions): Promise<void> {
  const contexts = opts.contexts;
  scope.addHook('onRequest', function portcullisContext(request: FastifyRequest, reply: FastifyReply, done) {
    const built = contexts.build(request.raw as unknown as Parameters<ContextFactory['build']>[0], request.id);
    if ('kind' in built) {
      sendRespond(reply, null, built);
      return;
    }
    request.portcullis = built;
    done();
  });
  for (const built of opts.stages) await scope.register(stagePlugin(built));
  // Reached only when no stage answered and no stage registered a handler for the route.
  scope.setNotFoundHandler((request, reply) => {
    sendRespond(
      reply,
      request.portcullis,
      page({ status: 500, title: 'Pipeline incomplete', message: 'No stage handled this request.', requestId: request.id, wantsJson: false, code: 'pipeline.unhandled' }),
    );
  });
}
