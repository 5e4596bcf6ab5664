// The route by which Portcullis's own stages reach what third-party stages must not: the full
// provider runtimes (secrets, keys, cookie codecs, OpenID clients), the config, the session
// store's writes, the metrics and WebSocket registries. A definition made with
// `defineBuiltInStage` is recorded here; `buildChain` issues the internal deps only for recorded
// definitions, keyed by the very deps object it hands to `create`. Nothing here is exported from
// the package's entry point. (A contract, not a sandbox: stages run in-process.)
import type { DependencyContainer } from 'tsyringe';
import type { FastifyInstance } from 'fastify';
import type { Stage, StageDefinition, StageDeps } from './contract.js';
import type { PortcullisConfig } from '../config/schema.js';
import type { ProviderRegistry } from '../config/provider.js';
import type { SessionStore } from '../sessions/store.js';
import type { AuthEvents } from './tokens.js';
import type { WebSocketRegistry } from '../server/websockets.js';

export interface BuiltInDeps {
  readonly config: PortcullisConfig;
  readonly providers: ProviderRegistry;
  readonly store: SessionStore;
  readonly events: AuthEvents;
  readonly websockets: WebSocketRegistry;
  /** The outpost's own container (every internal token). */
  readonly container: DependencyContainer;
}

/**
 * A built-in stage may also have a Fastify side (routes, hooks of its own), registered in the
 * pipeline scope as a plugin. Third-party stages have none: a Fastify scope would hand them every
 * request's whole context and the routes, around the contract.
 */
export interface BuiltInStageDefinition<Options = unknown> extends StageDefinition<Options> {
  fastify?(scope: FastifyInstance, stage: Stage): Promise<void>;
}

const builtIn = new WeakSet<object>();
const issued = new WeakMap<object, BuiltInDeps>();

/** A built-in stage's definition: frozen, and recorded as entitled to the internal deps. */
export function defineBuiltInStage<Options>(definition: BuiltInStageDefinition<Options>): BuiltInStageDefinition<Options> {
  const frozen = Object.freeze(definition);
  builtIn.add(frozen);
  return frozen;
}

export function isBuiltInStage(definition: StageDefinition<unknown>): definition is BuiltInStageDefinition<unknown> {
  return builtIn.has(definition);
}

/** Called by buildChain only, for a recorded definition's deps. */
export function issueBuiltInDeps(deps: StageDeps<unknown>, internal: BuiltInDeps): void {
  issued.set(deps, internal);
}

/** The internal deps of a built-in stage's `create`; throws for any other deps object. */
export function builtInDeps(deps: StageDeps<any>): BuiltInDeps {
  const internal = issued.get(deps);
  if (internal === undefined) throw new Error('internal stage deps are only issued to built-in stages');
  return internal;
}
