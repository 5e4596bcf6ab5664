// Builds the chain of stages from config and runs it. The same chain object serves Fastify
// (one onRequest hook per stage, see fastify.ts), WebSocket upgrades, unit tests and benchmarks.
import { Ajv } from 'ajv';
import type { DependencyContainer } from 'tsyringe';
import { CONTINUE, type RequestContext, type Stage, type StageDefinition, type StageOutcome } from './contract.js';
import type { StageRegistry } from './registry.js';
import { STAGE_OPTIONS } from './tokens.js';
import type { StageEntry } from '../config/schema.js';
import { ConfigError } from '../config/load.js';

/** The default order: who is it, may they pass anonymously, what do their claims decide, which headers, where to. */
export const DEFAULT_CHAIN: readonly StageEntry[] = [
  { stage: 'auth' },
  { stage: 'allowlist' },
  { stage: 'mappings' },
  { stage: 'headers' },
  { stage: 'forward' },
  { stage: 'upstream' },
];

/** Stages without which requests could not be served safely. */
const REQUIRED = ['auth', 'allowlist', 'headers', 'upstream'];

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
  const names = entries.map((e) => e.stage);
  const missing = REQUIRED.filter((r) => !names.includes(r));
  if (missing.length > 0) {
    throw new ConfigError(source, [{ code: 'config.pipeline_incomplete', field: 'pipeline', message: `the pipeline must include the built-in stages ${missing.join(', ')}` }]);
  }
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

export function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return v !== null && v !== undefined && typeof (v as { then?: unknown }).then === "function";
}
