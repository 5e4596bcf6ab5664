// Scope mappings written in CEL: compiled once at config load, evaluated once per login (the
// auth stage) into the claims the session stores.
import type { ParseResult } from '@marcbachmann/cel-js';
import { UNSAFE_KEYS, describeType, isObjectMap } from '../oidc/claim-values.js';
import {
  MappingEvaluationError,
  MAX_RESULT_JSON_LENGTH,
  compileExpression,
  describeEvaluationError,
  isPlainMap,
  mappingEnvironment,
  toPlainJson,
} from './cel.js';

export interface MappingInput {
  claims: Record<string, unknown>;
  request: { host: string; path: string; headers: Record<string, string> };
  provider: { name: string; slug: string };
}

export interface CompiledMappings {
  readonly count: number;
  /**
   * The merged claims: the IdP's claims (including its own ak_proxy) first, then each mapping's
   * result deep-merged over them in order. Every mapping sees the IdP's claims as `claims`
   * (not the previous mappings' output). Throws MappingEvaluationError.
   */
  evaluate(input: MappingInput): Record<string, unknown>;
}

/** One mapping, parsed and type-checked. */
export interface CompiledMapping {
  readonly name: string;
  readonly expression: string;
  readonly run: ParseResult;
}

/** Parses and type-checks one mapping. Throws MappingCompileError. */
export function compileMapping(m: { name: string; expression: string }): CompiledMapping {
  return { name: m.name, expression: m.expression, run: compileExpression(mappingEnvironment(), m.name, m.expression, 'map') };
}

/** Compiles (parses and type-checks) every mapping once. Throws MappingCompileError on the first bad one. */
export function compileMappings(mappings: { name: string; expression: string }[]): CompiledMappings {
  return mappingsOf(mappings.map(compileMapping));
}

/** A provider's mappings, from mappings compiled one by one (the config loader compiles them so). */
export function mappingsOf(compiled: readonly CompiledMapping[]): CompiledMappings {
  return {
    count: compiled.length,
    evaluate(input: MappingInput): Record<string, unknown> {
      let merged = deepMerge({}, input.claims);
      if (compiled.length === 0) return merged;
      const context = { claims: input.claims, request: input.request, provider: input.provider };
      for (const m of compiled) {
        let raw: unknown;
        try {
          raw = m.run(context);
        } catch (err) {
          throw new MappingEvaluationError(m.name, describeEvaluationError(err, m.expression));
        }
        if (raw instanceof Promise) throw new MappingEvaluationError(m.name, 'the expression returned a promise');
        if (!isPlainMap(raw) && !(raw instanceof Map)) {
          throw new MappingEvaluationError(m.name, `the expression must return a map, got ${describeType(raw)}`);
        }
        let result: Record<string, unknown>;
        let json: string;
        try {
          result = toPlainJson(raw) as Record<string, unknown>;
          json = JSON.stringify(result);
        } catch (err) {
          throw new MappingEvaluationError(m.name, `the result cannot be stored as a claim: ${(err as Error).message}`);
        }
        if (json.length > MAX_RESULT_JSON_LENGTH) {
          throw new MappingEvaluationError(m.name, `the result is ${json.length} characters of JSON; the limit is ${MAX_RESULT_JSON_LENGTH}`);
        }
        merged = deepMerge(merged, result);
      }
      return merged;
    },
  };
}

/**
 * Returns a new object: maps (plain objects) merge recursively; everything else — arrays,
 * scalars, null — in `addition` replaces what `base` had. Neither input is modified.
 * `__proto__`, `constructor` and `prototype` keys are ignored.
 */
export function deepMerge(base: Record<string, unknown>, addition: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(base)) {
    if (!UNSAFE_KEYS.has(key)) out[key] = base[key];
  }
  for (const key of Object.keys(addition)) {
    if (UNSAFE_KEYS.has(key)) continue;
    const next = addition[key];
    const prev = out[key];
    out[key] = isObjectMap(prev) && isObjectMap(next) ? deepMerge(prev, next) : isObjectMap(next) ? deepMerge({}, next) : next;
  }
  return out;
}
