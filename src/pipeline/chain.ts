// Builds the decision chain of stages from config and runs it. The same chain serves Fastify (one
// onRequest hook per request, see fastify.ts; WebSocket upgrades take the same route), unit tests
// and benchmarks. The chain only decides and enriches: where an allowed request goes is its exit
// (exits.ts), which no `pipeline:` can leave out.
import { Ajv } from 'ajv';
import type { DependencyContainer } from 'tsyringe';
import { CONTINUE, type RequestContext, type Stage, type StageDefinition, type StageOutcome } from './contract.js';
import type { StageRegistry } from './registry.js';
import { CONFIG, STAGE_OPTIONS } from './tokens.js';
import { isPromise } from './maybe-async.js';
import type { PortcullisConfig, StageEntry } from '../config/schema.js';
import { ConfigError, type ConfigIssue } from '../config/load.js';

/** The default order: who is it, may they pass anonymously, what do their claims decide, which headers. */
export const DEFAULT_CHAIN: readonly StageEntry[] = [{ stage: 'auth' }, { stage: 'allowlist' }, { stage: 'mappings' }, { stage: 'headers' }];

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
    stage: 'mappings',
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

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });

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
  const names = entries.map((e) => e.stage);
  const config = container.isRegistered(CONFIG, true) ? container.resolve(CONFIG) : undefined;
  const issues: ConfigIssue[] = [];
  for (const r of REQUIRED_STAGES) {
    if (names.includes(r.stage)) continue;
    if (r.when === undefined) {
      issues.push({ code: 'config.pipeline_incomplete', field: 'pipeline', message: `the pipeline must include the built-in stage "${r.stage}"` });
      continue;
    }
    const field = config === undefined ? null : r.when(config);
    if (field !== null) issues.push({ code: 'config.pipeline_incomplete', field: 'pipeline', message: `the pipeline must include the built-in stage "${r.stage}": ${field} is set, and only that stage enforces it` });
  }
  if (issues.length > 0) throw new ConfigError(source, issues);
  if (names[0] !== 'auth') {
    throw new ConfigError(source, [{ code: 'config.pipeline_order', field: 'pipeline', message: 'the first stage must be "auth": every later stage relies on knowing who the user is' }]);
  }
  const built: BuiltStage[] = [];
  for (const [i, entry] of entries.entries()) {
    let definition: StageDefinition<unknown>;
    try {
      definition = await registry.resolve(entry.stage, baseDir);
    } catch (err) {
      throw new ConfigError(source, [{ code: 'config.unknown_stage', field: `pipeline[${i}].stage`, message: (err as Error).message }]);
    }
    const options = structuredClone(entry.options ?? {}) as unknown;
    if (definition.optionsSchema) {
      const validate = ajv.compile(definition.optionsSchema);
      if (!validate(options)) {
        throw new ConfigError(
          source,
          (validate.errors ?? []).map((e) => ({
            code: 'config.invalid_stage_options',
            field: `pipeline[${i}].options${e.instancePath.replace(/\//g, '.')}`,
            message: `${definition.name}: ${e.message ?? 'invalid'}${e.keyword === 'additionalProperties' ? ` ("${(e.params as { additionalProperty: string }).additionalProperty}")` : ''}`,
          })),
        );
      }
    }
    const child = container.createChildContainer();
    child.register(STAGE_OPTIONS, { useValue: options });
    const stage = await definition.create(child, options);
    built.push({ stage, definition });
  }
  return built;
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
