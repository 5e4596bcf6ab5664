// How the chain lives in Fastify: one onRequest hook per request, which builds the context, runs
// the stages in order in one loop and hands the outcome to the request's exit. Decisions happen in
// onRequest, before any body is read; the proxied body is streamed.
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { RequestContext, Stage, StageOutcome } from './contract.js';
import type { BuiltStage } from './chain.js';
import type { RawRequestView } from './context.js';
import { runToExit } from './exits.js';
import type { Door } from './doors.js';
import { ROUTED_METHODS } from '../http/methods.js';
import { isPromise } from './maybe-async.js';
import { isBuiltInStage } from './built-in.js';
import { page } from '../http/pages.js';
import { sendRespond } from '../http/respond.js';

/** Kept for older imports: the writer lives in src/http/respond.ts. */
export { sendRespond };

declare module 'fastify' {
  interface FastifyRequest {
    /** The pipeline's per-request context (null outside the pipeline's routes). */
    portcullis: RequestContext | null;
  }
}

/**
 * The one onRequest hook of a door: context, then every stage of the chain in one loop, then the
 * exit (runToExit). Callback style: a synchronous chain costs no promise. An answer ends the
 * request here; the exit's CONTINUE hands it to the route handler (the proxy).
 */
export function doorHook(door: Door, stages: readonly Stage[]): onRequestHookHandler {
  return function portcullisDoor(request, reply, done) {
    const built = door.context(request.raw as unknown as RawRequestView, request.id);
    if ('kind' in built) {
      sendRespond(reply, null, built);
      return;
    }
    request.portcullis = built;
    let out: StageOutcome | Promise<StageOutcome>;
    try {
      out = runToExit(stages, door.exit(built), built);
    } catch (err) {
      return done(err as Error);
    }
    if (isPromise(out)) {
      out.then((o) => (o.kind === 'respond' ? void sendRespond(reply, built, o) : done()), done);
      return;
    }
    if (out.kind === 'respond') sendRespond(reply, built, out);
    else done(); // CONTINUE (runToExit never hands back a challenge)
  };
}

/** A stage as a Fastify plugin, with a built-in stage's Fastify parts if it has any (its decisions run in the door's hook, not in a hook of its own). */
export function stagePlugin(built: BuiltStage) {
  const definition = built.definition;
  return fp(
    async (scope: FastifyInstance) => {
      if (isBuiltInStage(definition) && definition.fastify) await definition.fastify(scope, built.stage);
    },
    { name: `portcullis-stage-${built.stage.name}`, fastify: '5.x' },
  );
}

export interface PipelineScopeOptions {
  stages: readonly BuiltStage[];
  doors: readonly Door[];
}

/**
 * The pipeline scope: one encapsulated scope per door, holding its routes and its one hook; the
 * stages' Fastify parts, if any. Nothing leaks to the outpost's own routes (ping, ready).
 */
export async function pipelineScope(scope: FastifyInstance, opts: PipelineScopeOptions): Promise<void> {
  const stages = opts.stages.map((b) => b.stage);
  for (const door of opts.doors) {
    await scope.register(async (doorScope: FastifyInstance) => {
      doorScope.addHook('onRequest', doorHook(door, stages));
      if (door.fastify) await door.fastify(doorScope);
      else for (const url of door.routes) doorScope.route({ method: [...ROUTED_METHODS], url, handler: unhandled });
    });
  }
  for (const built of opts.stages) await scope.register(stagePlugin(built));
  scope.setNotFoundHandler(unhandled);
}

/** Reached only when an exit let a request through that no handler serves: fail closed. */
function unhandled(request: FastifyRequest, reply: FastifyReply): void {
  sendRespond(
    reply,
    request.portcullis,
    page({ status: 500, title: 'Pipeline incomplete', message: 'No exit handled this request.', requestId: request.id, wantsJson: false, code: 'pipeline.unhandled' }),
  );
}
