// Exits: where a request leaves Portcullis once the decision chain has let it through. The chain
// only decides and enriches; what its "go on" means depends on how the request came in: proxied
// to the upstream (the upstream plugin), answered 200 with identity headers to the reverse proxy
// that asked (the forward-auth plugin), or served by a login endpoint (the auth plugin). Exits are
// no stages: a `pipeline:` cannot leave one out, reorder it, or run one for the wrong kind of
// request.
import type { DependencyContainer } from 'tsyringe';
import { CONTINUE, type RequestContext, type Respond, type Stage, type StageOutcome } from './contract.js';
import { runStages, type BuiltStage } from './chain.js';
import { isPromise } from './maybe-async.js';

export interface Exit {
  readonly name: string;
  /**
   * Whether the decision chain runs before this exit. The login endpoints say false: they are
   * reached signed in or not, and identify the user themselves.
   */
  readonly afterChain: boolean;
  /**
   * What the chain's "go on" becomes: an answer (a forward-auth decision, a login page), or
   * CONTINUE to hand the request to the route's handler (the proxy, which streams it upstream).
   * Still in onRequest: no body has been read.
   */
  finish(ctx: RequestContext): StageOutcome | Promise<StageOutcome>;
  /** A stage's CHALLENGE ("sign in first"), in the form this exit's caller understands. */
  challenge(ctx: RequestContext): Respond | Promise<Respond>;
}

/** How a plugin contributes an exit: built once per config generation from the DI container. */
export interface ExitDefinition {
  readonly name: string;
  /** `chain`: the built stages (the login exit serves with the auth stage's own lookup). */
  create(container: DependencyContainer, chain: readonly BuiltStage[]): Exit | Promise<Exit>;
}

export async function buildExits(definitions: readonly ExitDefinition[], container: DependencyContainer, chain: readonly BuiltStage[]): Promise<Map<string, Exit>> {
  const out = new Map<string, Exit>();
  for (const def of definitions) {
    if (out.has(def.name)) throw new Error(`exit "${def.name}" is defined twice`);
    out.set(def.name, await def.create(container, chain));
  }
  return out;
}

/**
 * The chain, then the exit: a stage's answer ends the request, its challenge is answered by the
 * exit, and the chain's "go on" is what the exit makes of it. The Fastify hook (fastify.ts), the
 * benchmarks and tests all serve a request so. Never a challenge: an answer or CONTINUE.
 */
export function runToExit(stages: readonly Stage[], exit: Exit, ctx: RequestContext): StageOutcome | Promise<StageOutcome> {
  const out = exit.afterChain ? runStages(stages, ctx) : CONTINUE;
  if (isPromise(out)) return out.then((o) => toExit(o, exit, ctx));
  return toExit(out, exit, ctx);
}

function toExit(out: StageOutcome, exit: Exit, ctx: RequestContext): StageOutcome | Promise<StageOutcome> {
  if (out.kind === 'continue') return exit.finish(ctx);
  if (out.kind === 'challenge') return exit.challenge(ctx);
  return out;
}
