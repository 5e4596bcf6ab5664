// What the loader compiles once per provider — skip_path_regex (RE2), the scope mappings and the
// access rules (CEL, RE2) — kept with the validated provider config, so that the stages use the
// objects the validation built instead of compiling the text a second time. The loader reports
// what does not compile (naming field and line); compiledOf() hands the stages the result.
import RE2 from 're2';
import type { ProviderConfig } from './schema.js';
import { accessRulesOf, compileAccessRule, compileMapping, mappingsOf, type CompiledAccessRules, type CompiledMappings } from '../mappings/index.js';

export interface CompiledSkipPaths {
  /**
   * All lines as one RE2 alternation `(?:l1)|(?:l2)|…`: one pass over the subject instead of one
   * per line (100 lines: ~60 ns instead of ~3 µs). Each line keeps its own flags and anchors,
   * since RE2 scopes `(?i)`-style flags to the enclosing group. Null when there are no lines.
   */
  readonly pattern: RE2 | null;
  /**
   * Lines that cannot share the alternation: `\Q` quotes up to `\E` or the end of the pattern,
   * so an unterminated one would swallow the group's `)`. They are tested one by one.
   */
  readonly separate: readonly RE2[];
}

export interface CompiledProvider {
  readonly skipPaths: CompiledSkipPaths;
  readonly mappings: CompiledMappings;
  /** Null when the provider has no access rules. */
  readonly accessRules: CompiledAccessRules | null;
}

const compiled = new WeakMap<ProviderConfig, CompiledProvider>();

/** Called by the loader once everything of `config` compiled. */
export function keepCompiled(config: ProviderConfig, value: CompiledProvider): void {
  compiled.set(config, value);
}

/**
 * The compiled form of a provider's config. A config the loader did not produce (built by hand,
 * or copied) is compiled here, once, and throws what the loader would have reported.
 */
export function compiledOf(config: ProviderConfig): CompiledProvider {
  let c = compiled.get(config);
  if (c === undefined) {
    const skipPaths = compileSkipPaths(config.skip_path_regex);
    if (skipPaths instanceof SkipPathsError) throw new Error(skipPaths.problems.map((p) => p.message).join('; '));
    c = { skipPaths, mappings: mappingsOf(config.mappings.map(compileMapping)), accessRules: config.access_rules.length > 0 ? accessRulesOf(config.access_rules.map(compileAccessRule)) : null };
    compiled.set(config, c);
  }
  return c;
}

/** The non-blank lines of a skip_path_regex field; CR from CRLF files is dropped. */
export function skipPatternLines(field: string): { pattern: string; lineIndex: number }[] {
  const out: { pattern: string; lineIndex: number }[] = [];
  field.split('\n').forEach((line, lineIndex) => {
    const pattern = line.replace(/\r$/, '');
    if (pattern.trim() !== '') out.push({ pattern, lineIndex });
  });
  return out;
}

/** Why skip_path_regex does not compile: each bad line, or the field as a whole. */
export class SkipPathsError {
  constructor(readonly problems: readonly { message: string }[]) {}
}

/**
 * Compiles skip_path_regex into what the allowlist stage runs. Each line is compiled on its own
 * only when the whole does not compile, to name the lines that are wrong.
 */
export function compileSkipPaths(field: string): CompiledSkipPaths | SkipPathsError {
  const lines = skipPatternLines(field);
  const grouped = lines.filter((l) => !l.pattern.includes('\\Q'));
  try {
    return {
      pattern: grouped.length === 0 ? null : new RE2(grouped.map((l) => `(?:${l.pattern})`).join('|')),
      separate: lines.filter((l) => l.pattern.includes('\\Q')).map((l) => new RE2(l.pattern)),
    };
  } catch (whole) {
    const problems: { message: string }[] = [];
    for (const { pattern, lineIndex } of lines) {
      try {
        new RE2(pattern);
      } catch (err) {
        problems.push({ message: `line ${lineIndex + 1} of skip_path_regex ("${pattern}") is not a valid RE2 regex: ${(err as Error).message}` });
      }
    }
    // Every line compiles alone, the alternation does not (RE2's size limit): say so.
    if (problems.length === 0) problems.push({ message: `skip_path_regex does not compile as one RE2 regex: ${(whole as Error).message}` });
    return new SkipPathsError(problems);
  }
}
