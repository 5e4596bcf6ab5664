// Access rules: per provider, CEL conditions over the session's claims, each on the paths its
// RE2 patterns match. Compiled once at config load; the access_rules stage checks them per request.
import RE2 from 're2';
import type { ParseResult } from '@marcbachmann/cel-js';
import { MappingCompileError, compileExpression, ruleEnvironment } from './cel.js';

export interface CompiledAccessRules {
  readonly count: number;
  /** Every rule whose paths match (or that has none) must return true; errors deny. */
  check(path: string, claims: Record<string, unknown>): { allowed: true } | { allowed: false; rule: string };
}

/** One rule, compiled: its path regexes and its `when`. */
export interface CompiledAccessRule {
  readonly paths: RE2[] | null;
  readonly run: ParseResult;
  readonly denied: { allowed: false; rule: string };
}

/** A rule's `paths[index]` is not a valid RE2 regex. */
export class AccessRulePathError extends MappingCompileError {
  constructor(
    rule: string,
    readonly index: number,
    readonly pattern: string,
    readonly reason: string,
  ) {
    super(rule, `paths[${index}] "${pattern}" is not a valid RE2 regex: ${reason}`);
  }
}

const ALLOWED = Object.freeze({ allowed: true as const });

/** The label used for a rule in errors and in check() results: its name, else `access_rules[i]`. */
export function accessRuleLabel(rule: { name?: string }, index: number): string {
  return rule.name ?? `access_rules[${index}]`;
}

/**
 * Compiles one rule (the `index`-th of its provider): its path regexes (RE2), then its `when`.
 * Throws AccessRulePathError for a bad path, MappingCompileError for a bad `when`.
 */
export function compileAccessRule(rule: { name?: string; paths?: string[]; when: string }, index: number): CompiledAccessRule {
  const label = accessRuleLabel(rule, index);
  const paths =
    rule.paths === undefined
      ? null
      : rule.paths.map((pattern, j) => {
          try {
            return new RE2(pattern);
          } catch (err) {
            throw new AccessRulePathError(label, j, pattern, (err as Error).message);
          }
        });
  return { paths, run: compileExpression(ruleEnvironment(), label, rule.when, 'bool'), denied: Object.freeze({ allowed: false as const, rule: label }) };
}

/** Compiles every rule's path regexes (RE2) and `when` once. Throws MappingCompileError. */
export function compileAccessRules(rules: { name?: string; paths?: string[]; when: string }[]): CompiledAccessRules {
  return accessRulesOf(rules.map(compileAccessRule));
}

/** The provider's rules, from rules compiled one by one (the config loader compiles them so). */
export function accessRulesOf(compiled: readonly CompiledAccessRule[]): CompiledAccessRules {
  // One context object, reused: check() is synchronous, so no two evaluations overlap.
  const context: { claims: Record<string, unknown> } = { claims: {} };
  const n = compiled.length;
  return {
    count: n,
    check(path, claims) {
      for (let i = 0; i < n; i++) {
        const rule = compiled[i]!;
        if (rule.paths !== null && !matchesAny(rule.paths, path)) continue;
        context.claims = claims;
        let result: unknown;
        try {
          result = rule.run(context);
        } catch {
          result = false; // fail closed
        }
        context.claims = EMPTY;
        if (result !== true) return rule.denied;
      }
      return ALLOWED;
    },
  };
}

const EMPTY: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

function matchesAny(patterns: RE2[], path: string): boolean {
  for (let i = 0; i < patterns.length; i++) if (patterns[i]!.test(path)) return true;
  return false;
}
