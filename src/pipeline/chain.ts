// Builds the decision chain of stages from config and runs it. The same chain serves Fastify (one
// onRequest hook per request, see fastify.ts; WebSocket upgrades take the same route), unit tests
// and benchmarks. The chain only decides and enriches: where an allowed request goes is its exit
// (exits.ts), which no `pipeline:` can leave out.
// tsyringe needs the Reflect polyfill loaded before it (the global container is used below).
import 'reflect-metadata';
import type { ErrorObject } from 'ajv';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { CONTEXT_FIELDS, CONTINUE, type ContextField, type RequestContext, type Stage, type StageDefinition, type StageDeps, type StageOutcome } from './contract.js';
import type { StageRegistry } from './registry.js';
import { AUTH_EVENTS, CONFIG, LOGGER, NO_AUTH_EVENTS, PROVIDERS, PROVIDER_VIEWS, SESSION_READER, SESSION_STORE, STAGE_OPTIONS, VERSION, WEBSOCKETS } from './tokens.js';
import { isBuiltInStage, issueBuiltInDeps, type BuiltInDeps } from './built-in.js';
import { isPromise } from './maybe-async.js';
import type { Logger } from './logger.js';
import type { PortcullisConfig, StageEntry } from '../config/schema.js';
import type { ProviderRegistry } from '../config/provider.js';
import type { SessionRecord, SessionStore } from '../sessions/store.js';
import type { WebSocketRegistry } from '../server/websockets.js';
import { ConfigError, fieldName, locateConfigField, pointerToPath, type ConfigIssue } from '../config/load.js';
import { ajv } from '../config/ajv.js';

/** The default order: who is it, may they pass anonymously, what do their claims decide, which headers. */
export const DEFAULT_CHAIN: readonly StageEntry[] = [{ stage: 'auth' }, { stage: 'allowlist' }, { stage: 'access_rules' }, { stage: 'headers' }];

/**
 * A stage without which requests could not be served safely: always, or whenever the config sets
 * a field that only this stage enforces (`when` names the first such field, or returns null).
 */
export interface RequiredStage {
  readonly stage: string;
  readonly when?: (config: PortcullisConfig) => string | null;
}

export const REQUIRED_STAGES: readonly RequiredStage[] = [
  { stage: 'auth' },
  { stage: 'allowlist' },
  { stage: 'headers' },
  // Leaving it out would switch the configured access rules off while the config is accepted.
  {
    stage: 'access_rules',
    when: (config) => {
      const i = config.providers.findIndex((p) => p.access_rules.length > 0);
      return i === -1 ? null : `providers[${i}].access_rules`;
    },
  },
];

/**
 * Names that were stages before they became exits (`forward`, `upstream`). A `pipeline:` written
 * for that version may still list them, last; they stand for nothing now (exits always run).
 */
const FORMER_STAGES = new Set(['forward', 'upstream']);

export interface BuiltStage {
  readonly stage: Stage;
  readonly definition: StageDefinition<unknown>;
}

export async function buildChain(
  entries: readonly StageEntry[],
  registry: StageRegistry,
  container: DependencyContainer,
  baseDir: string,
  source = '<config>',
): Promise<BuiltStage[]> {
  const firstFormer = entries.findIndex((e) => FORMER_STAGES.has(e.stage));
  if (firstFormer !== -1) {
    const stray = entries.findIndex((e, i) => i > firstFormer && !FORMER_STAGES.has(e.stage));
    if (stray !== -1) {
      throw new ConfigError(source, [
        {
          code: 'config.pipeline_order',
          field: `pipeline[${firstFormer}].stage`,
          message: `"${entries[firstFormer]!.stage}" is no longer a stage but an exit, which always runs after the last stage; remove it from the pipeline (or list it last)`,
        },
      ]);
    }
    entries = entries.slice(0, firstFormer);
  }
  // An old name (`mappings`) stands for the stage's current one.
  const names = entries.map((e) => registry.renamed(e.stage) ?? e.stage);
  const config = container.resolve(CONFIG);
  const issues: ConfigIssue[] = [];
  for (const r of REQUIRED_STAGES) {
    if (names.includes(r.stage)) continue;
    if (r.when === undefined) {
      issues.push({ code: 'config.pipeline_incomplete', field: 'pipeline', message: `the pipeline must include the built-in stage "${r.stage}"` });
      continue;
    }
    const field = r.when(config);
    if (field !== null) issues.push({ code: 'config.pipeline_incomplete', field: 'pipeline', message: `the pipeline must include the built-in stage "${r.stage}": ${field} is set, and only that stage enforces it` });
  }
  if (issues.length > 0) throw new ConfigError(source, issues);
  if (names[0] !== 'auth') {
    throw new ConfigError(source, [{ code: 'config.pipeline_order', field: 'pipeline', message: 'the first stage must be "auth": every later stage relies on knowing who the user is' }]);
  }
  const issue = (path: (string | number)[], code: string, message: string): ConfigIssue => ({ code, field: fieldName(path), message, ...locateConfigField(config, path) });
  const definitions: StageDefinition<unknown>[] = [];
  for (const [i, entry] of entries.entries()) {
    const renamed = registry.renamed(entry.stage);
    if (renamed !== undefined) {
      container.resolve<Logger>(LOGGER).warn({ field: `pipeline[${i}].stage`, stage: entry.stage, now: renamed }, `${source}: stage "${entry.stage}" is now called "${renamed}"; rename it in the pipeline`);
    }
    try {
      definitions.push(await registry.resolve(entry.stage, baseDir));
    } catch (err) {
      throw new ConfigError(source, [issue(['pipeline', i, 'stage'], 'config.unknown_stage', (err as Error).message)]);
    }
  }
  const orderIssues = checkDeclaredFields(definitions, issue);
  if (orderIssues.length > 0) throw new ConfigError(source, orderIssues);

  const internal = internalDeps(container, config);
  const views = internal.providers.all.map((p) => p.view);
  const sessions = sessionReader(internal.store);
  const logger = container.resolve(LOGGER);
  const version = container.resolve(VERSION);
  const built: BuiltStage[] = [];
  for (const [i, entry] of entries.entries()) {
    const definition = definitions[i]!;
    const { options, providerOptions } = stageOptions(entry, i, definition, internal.providers, issue, source);
    const trusted = isBuiltInStage(definition);
    // A built-in stage's container is a child of the outpost's; a third-party stage's is a child
    // of the global container with the public tokens only: PROVIDERS, CONFIG and SESSION_STORE
    // resolve secrets (or write sessions), so they are not registered there.
    const child = trusted ? container.createChildContainer() : globalContainer.createChildContainer();
    child.register(STAGE_OPTIONS, { useValue: options });
    child.register(PROVIDER_VIEWS, { useValue: views });
    child.register(SESSION_READER, { useValue: sessions });
    child.register(VERSION, { useValue: version });
    const stageLogger = logger.child({ stage: definition.name });
    child.register(LOGGER, { useValue: stageLogger });
    const deps: StageDeps<unknown> = Object.freeze({
      logger: stageLogger,
      providers: views,
      providerOptions,
      sessions,
      outpostName: config.outpost.name,
      version,
      container: child,
    });
    if (trusted) issueBuiltInDeps(deps, internal);
    const created = await definition.create(deps, options);
    built.push({ stage: trusted ? created : guardWrites(created, definition, stageLogger), definition });
  }
  return built;
}

/** What the built-in stages reach by the internal route (see built-in.ts). */
function internalDeps(container: DependencyContainer, config: PortcullisConfig): BuiltInDeps {
  return Object.freeze({
    config,
    providers: container.resolve<ProviderRegistry>(PROVIDERS),
    store: container.resolve<SessionStore>(SESSION_STORE),
    events: container.isRegistered(AUTH_EVENTS, true) ? container.resolve(AUTH_EVENTS) : NO_AUTH_EVENTS,
    websockets: container.resolve<WebSocketRegistry>(WEBSOCKETS),
    container,
  });
}

/** Reads by id and nothing else: the store itself (put, delete, deleteUser) stays out of reach. */
function sessionReader(store: SessionStore): StageDeps['sessions'] {
  const withoutRefreshToken = (r: SessionRecord | undefined): SessionRecord | undefined => {
    if (r === undefined || r.refreshToken === undefined) return r;
    const { refreshToken: _kept, ...rest } = r;
    return Object.freeze(rest);
  };
  return Object.freeze({
    // Another user's session, by id: without its refresh token (it outlives the session's tokens).
    get: (id: string) => {
      const found = store.get(id);
      return isPromise(found) ? found.then(withoutRefreshToken) : withoutRefreshToken(found);
    },
  });
}

/**
 * The declared reads and writes, in chain order: a stage reading a field that no earlier stage
 * writes cannot work (it would always see the context's initial null / false), so the order is
 * refused at load, naming the stage's entry.
 */
export function checkDeclaredFields(
  definitions: readonly StageDefinition<unknown>[],
  issue: (path: (string | number)[], code: string, message: string) => ConfigIssue,
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const writers = new Map<ContextField, string>();
  for (const [i, d] of definitions.entries()) {
    for (const f of [...(d.reads ?? []), ...(d.writes ?? [])]) {
      if (!(CONTEXT_FIELDS as readonly string[]).includes(f)) out.push(issue(['pipeline', i, 'stage'], 'config.stage_fields', `${d.name} declares "${f}", which is not a context field (${CONTEXT_FIELDS.join(', ')})`));
    }
    for (const f of d.reads ?? []) {
      if (writers.has(f)) continue;
      const later = definitions.slice(i + 1).find((l) => l.writes?.includes(f));
      out.push(
        issue(
          ['pipeline', i, 'stage'],
          'config.pipeline_order',
          `${d.name} reads ctx.${f}, which no earlier stage writes${later ? ` (${later.name} writes it: put ${d.name} after ${later.name})` : ''}`,
        ),
      );
    }
    for (const f of d.writes ?? []) if (!writers.has(f)) writers.set(f, d.name);
  }
  return out;
}

/**
 * The entry's options, validated by the stage's schema with the config's Ajv (formats
 * included), and the effective options per provider: `providers: { <name>: {...} }` merged over
 * `options` (top-level keys replaced), each set validated. Errors name the field and its line.
 */
function stageOptions(
  entry: StageEntry,
  i: number,
  definition: StageDefinition<unknown>,
  providers: ProviderRegistry,
  issue: (path: (string | number)[], code: string, message: string) => ConfigIssue,
  source: string,
): { options: unknown; providerOptions: readonly unknown[] } {
  const validate = definition.optionsSchema ? ajv.compile(definition.optionsSchema) : null;
  const check = (value: unknown, at: (string | number)[], overridden?: ReadonlySet<string>): ConfigIssue[] => {
    if (validate === null || validate(value)) return [];
    return (validate.errors ?? []).map((e) => {
      const path = pointerToPath(e.instancePath);
      // In a provider's set, a field that came from `options` was already checked there: an error
      // under an overridden key names the override.
      const where = overridden === undefined || (path.length > 0 && overridden.has(String(path[0]))) ? [...at, ...path] : at;
      return issue(where, 'config.invalid_stage_options', `${definition.name}: ${describe(e)}`);
    });
  };
  const options = structuredClone(entry.options ?? {}) as unknown;
  const baseIssues = check(options, ['pipeline', i, 'options']);
  if (baseIssues.length > 0) throw new ConfigError(source, baseIssues);

  const overrides = entry.providers ?? {};
  const issues: ConfigIssue[] = [];
  const perProvider = new Map<string, unknown>();
  for (const [name, override] of Object.entries(overrides)) {
    const at = ['pipeline', i, 'providers', name];
    if (providers.byName(name) === undefined) {
      issues.push(issue(at, 'config.unknown_provider', `no provider is named "${name}" (providers: ${providers.all.map((p) => p.name).join(', ')})`));
      continue;
    }
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      issues.push(issue(at, 'config.invalid_stage_options', `${definition.name}: per-provider options need the stage's options to be a mapping`));
      continue;
    }
    const merged = { ...(structuredClone(entry.options ?? {}) as object), ...structuredClone(override) };
    const found = check(merged, at, new Set(Object.keys(override)));
    if (found.length > 0) issues.push(...found);
    else perProvider.set(name, merged);
  }
  if (issues.length > 0) throw new ConfigError(source, issues);
  return { options, providerOptions: Object.freeze(providers.all.map((p) => (perProvider.has(p.name) ? perProvider.get(p.name) : options))) };
}

function describe(e: ErrorObject): string {
  const extra = e.keyword === 'additionalProperties' ? ` ("${(e.params as { additionalProperty: string }).additionalProperty}")` : '';
  return `${e.message ?? 'invalid'}${extra}`;
}

/**
 * A third-party stage held to its declared writes: every context field it did not declare is
 * compared before and after its run, and an undeclared assignment fails the request — a 500,
 * never a silently changed decision — and is logged. Fields are read by name (monomorphic loads,
 * no allocation on the synchronous path: a few ns per request). Contents of a declared list
 * (push onto setCookies) are not tracked. The wrapper keeps the stage's own properties reachable
 * through its prototype.
 */
function guardWrites(stage: Stage, definition: StageDefinition<unknown>, log: Logger): Stage {
  const writes = new Set<string>(definition.writes ?? []);
  if (CONTEXT_FIELDS.every((f) => writes.has(f))) return stage;
  const may = (f: ContextField) => writes.has(f);
  const [session, headerAuth, sessionUnavailable, allowlisted, identityHeaders, upstreamHeaders, upstream, setCookies] = [
    may('session'),
    may('headerAuth'),
    may('sessionUnavailable'),
    may('allowlisted'),
    may('identityHeaders'),
    may('upstreamHeaders'),
    may('upstream'),
    may('setCookies'),
  ];
  const fail = (field: ContextField): never => {
    log.error({ field }, 'stage assigned a context field it does not declare in writes');
    throw new Error(`stage "${definition.name}" assigned ctx.${field}, which its definition does not declare in writes`);
  };
  // Defined once: a closure made per request would cost far more than the checks (and, under
  // esbuild's keepNames, a defineProperty each).
  const verify = (ctx: RequestContext, s0: unknown, s1: unknown, s2: unknown, s3: unknown, s4: unknown, s5: unknown, s6: unknown, s7: unknown): void => {
    if (!session && ctx.session !== s0) fail('session');
    if (!headerAuth && ctx.headerAuth !== s1) fail('headerAuth');
    if (!sessionUnavailable && ctx.sessionUnavailable !== s2) fail('sessionUnavailable');
    if (!allowlisted && ctx.allowlisted !== s3) fail('allowlisted');
    if (!identityHeaders && ctx.identityHeaders !== s4) fail('identityHeaders');
    if (!upstreamHeaders && ctx.upstreamHeaders !== s5) fail('upstreamHeaders');
    if (!upstream && ctx.upstream !== s6) fail('upstream');
    if (!setCookies && ctx.setCookies !== s7) fail('setCookies');
  };
  const run = (ctx: RequestContext): StageOutcome | Promise<StageOutcome> => {
    const s0 = ctx.session, s1 = ctx.headerAuth, s2 = ctx.sessionUnavailable, s3 = ctx.allowlisted;
    const s4 = ctx.identityHeaders, s5 = ctx.upstreamHeaders, s6 = ctx.upstream, s7 = ctx.setCookies;
    const out = stage.run(ctx);
    if (isPromise(out)) {
      return out.then((o) => {
        verify(ctx, s0, s1, s2, s3, s4, s5, s6, s7);
        return o;
      });
    }
    verify(ctx, s0, s1, s2, s3, s4, s5, s6, s7);
    return out;
  };
  const wrapper = Object.create(stage) as Stage & { run: typeof run };
  Object.defineProperty(wrapper, 'run', { value: run });
  return wrapper;
}

/**
 * Runs stages in order without Fastify (WebSocket upgrades, tests, benchmarks). Synchronous
 * stages cost no promise; the first `respond` ends the run.
 */
export function runStages(stages: readonly Stage[], ctx: RequestContext, from = 0): StageOutcome | Promise<StageOutcome> {
  for (let i = from; i < stages.length; i++) {
    const out = stages[i]!.run(ctx);
    if (out === CONTINUE) continue;
    if (isPromise(out)) return out.then((o) => (o === CONTINUE || o.kind === 'continue' ? runStages(stages, ctx, i + 1) : o));
    if (out.kind === 'continue') continue;
    return out;
  }
  return CONTINUE;
}


/** Kept for older imports: use `isPromise` from maybe-async.ts. */
export { isPromise } from './maybe-async.js';
