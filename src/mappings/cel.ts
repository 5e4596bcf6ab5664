// Shared CEL plumbing for scope mappings and access rules: the two environments, compile-time
// bounds, error positions, and conversion of CEL values back to plain JSON.
import { Environment, type ASTNode, type ParseResult } from '@marcbachmann/cel-js';
import { Duration, UnsignedInt } from '@marcbachmann/cel-js/evaluator';
import RE2 from 're2';
import { UNSAFE_KEYS } from '../oidc/claim-values.js';

/** Longest accepted expression, in characters. */
export const MAX_EXPRESSION_LENGTH = 4096;
/** Longest accepted mapping result, as JSON text (UTF-16 code units). */
export const MAX_RESULT_JSON_LENGTH = 64 * 1024;
/** Deepest nesting of comprehension macros (all, exists, exists_one, map, filter). */
export const MAX_COMPREHENSION_NESTING = 2;

/** Parse-time structural limits handed to cel-js (it has no runtime cost limit). */
export const CEL_LIMITS = {
  maxAstNodes: 512,
  maxDepth: 32,
  maxListElements: 128,
  maxMapEntries: 128,
  maxCallArguments: 16,
} as const;

const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

export class MappingCompileError extends Error {
  readonly mapping: string;
  readonly position?: { line: number; column: number };
  readonly detail: string;
  constructor(mapping: string, detail: string, position?: { line: number; column: number }) {
    super(`mapping '${mapping}'${position ? `, line ${position.line} column ${position.column}` : ''}: ${detail}`);
    this.name = 'MappingCompileError';
    this.mapping = mapping;
    this.detail = detail;
    if (position) this.position = position;
  }
}

export class MappingEvaluationError extends Error {
  readonly mapping: string;
  readonly detail: string;
  constructor(mapping: string, detail: string) {
    super(`mapping '${mapping}': ${detail}`);
    this.name = 'MappingEvaluationError';
    this.mapping = mapping;
    this.detail = detail;
  }
}

let mappingEnv: Environment | undefined;
let ruleEnv: Environment | undefined;

/**
 * matches() runs on RE2. cel-js evaluates it with a JS RegExp, and RE2 syntax accepts patterns
 * such as `^(a+)+$` that backtrack exponentially there — on request headers at login, or on
 * claims at every request. Every matches() call is renamed to this function at compile time; its
 * patterns are string literals compiled once.
 */
const RE2_MATCHES = 're2Matches';
const compiledPatterns = new Map<string, RE2>();
function re2Matches(text: string, pattern: string): boolean {
  let re = compiledPatterns.get(pattern);
  if (re === undefined) compiledPatterns.set(pattern, (re = new RE2(pattern)));
  return re.test(text);
}

function newEnvironment(): Environment {
  return new Environment({ homogeneousAggregateLiterals: false, limits: CEL_LIMITS })
    .registerFunction(`string.${RE2_MATCHES}(string): bool`, re2Matches)
    .registerFunction(`${RE2_MATCHES}(string, string): bool`, re2Matches);
}

/** Variables `claims`, `request`, `provider` (all maps). Built lazily, once. */
export function mappingEnvironment(): Environment {
  return (mappingEnv ??= newEnvironment().registerVariable('claims', 'map').registerVariable('request', 'map').registerVariable('provider', 'map'));
}

/** Variable `claims` (map) only. */
export function ruleEnvironment(): Environment {
  return (ruleEnv ??= newEnvironment().registerVariable('claims', 'map'));
}

/** 1-based line and column of a character offset. */
export function offsetToPosition(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let column = 1;
  const end = Math.min(Math.max(offset, 0), text.length);
  for (let i = 0; i < end; i++) {
    if (text[i] === '\n') {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  return { line, column };
}

interface CelErrorLike {
  summary?: unknown;
  message?: unknown;
  range?: { start: number; end: number };
}

function errorParts(err: unknown): { summary: string; start?: number } {
  const e = (err ?? {}) as CelErrorLike;
  const summary = typeof e.summary === 'string' ? e.summary : typeof e.message === 'string' ? e.message.split('\n')[0]! : String(err);
  return { summary, start: typeof e.range?.start === 'number' ? e.range.start : undefined };
}

/**
 * Parses and type-checks one expression. `resultKinds` are the static result types accepted
 * ('dyn' always is: it is checked again at evaluation).
 */
export function compileExpression(env: Environment, label: string, expression: string, resultKind: 'map' | 'bool'): ParseResult {
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    throw new MappingCompileError(label, `expression is ${expression.length} characters long; the limit is ${MAX_EXPRESSION_LENGTH}`);
  }
  const fail = (err: unknown): never => {
    const { summary, start } = errorParts(err);
    throw new MappingCompileError(label, summary, start === undefined ? undefined : offsetToPosition(expression, start));
  };
  let parsed: ParseResult;
  try {
    parsed = env.parse(expression);
  } catch (err) {
    return fail(err);
  }
  useRe2ForMatches(parsed.ast, label, expression);
  // check() also stores the checked types on the AST, so evaluation never type-checks again.
  const checked = parsed.check();
  if (!checked.valid) return fail(checked.error);
  const type = checked.type ?? 'dyn';
  const ok = type === 'dyn' || (resultKind === 'map' ? type === 'map' || type.startsWith('map<') : type === 'bool');
  if (!ok) {
    throw new MappingCompileError(label, `the expression returns ${type}; it must return ${resultKind === 'map' ? 'a map' : 'a bool'}`, offsetToPosition(expression, 0));
  }
  inspectAst(parsed.ast, label, expression);
  return parsed;
}

/**
 * Before type-checking: every matches() call gets a string literal RE2 pattern (compiled here, so
 * a bad one fails at start) and is renamed to the RE2-backed function.
 */
function useRe2ForMatches(root: ASTNode, label: string, expression: string): void {
  const at = (node: { start?: number; pos?: number }) => offsetToPosition(expression, node.start ?? node.pos ?? 0);
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const child of node) visit(child);
      return;
    }
    if (!node || typeof node !== 'object' || !('op' in node)) return;
    const n = node as ASTNode;
    if ((n.op === 'rcall' || n.op === 'call') && n.args[0] === 'matches') {
      const args = n.op === 'rcall' ? n.args[2] : n.args[1];
      const pattern = args[args.length - 1];
      if (!pattern || pattern.op !== 'value' || typeof pattern.args !== 'string') {
        throw new MappingCompileError(label, 'matches() needs a string literal pattern', at(n));
      }
      try {
        if (!compiledPatterns.has(pattern.args)) compiledPatterns.set(pattern.args, new RE2(pattern.args));
      } catch (err) {
        throw new MappingCompileError(label, `matches() pattern is not a valid RE2 regex: ${(err as Error).message}`, at(pattern));
      }
      (n.args as unknown[])[0] = RE2_MATCHES;
    }
    if (n.op === 'value' || n.op === 'id') return;
    visit(n.args);
  };
  visit(root);
}

/** Enforces the comprehension nesting bound. */
function inspectAst(root: ASTNode, label: string, expression: string): void {
  const at = (node: { start?: number; pos?: number }) => offsetToPosition(expression, node.start ?? node.pos ?? 0);
  const visit = (node: unknown, depth: number): void => {
    if (Array.isArray(node)) {
      for (const child of node) visit(child, depth);
      return;
    }
    if (!node || typeof node !== 'object' || !('op' in node)) return;
    const n = node as ASTNode;
    let nextDepth = depth;
    if (n.op === 'rcall' || n.op === 'call') {
      const name = n.args[0];
      if (n.op === 'rcall' && COMPREHENSIONS.has(name)) {
        nextDepth = depth + 1;
        if (nextDepth > MAX_COMPREHENSION_NESTING) {
          throw new MappingCompileError(label, `comprehensions (${[...COMPREHENSIONS].join(', ')}) may be nested at most ${MAX_COMPREHENSION_NESTING} deep`, at(n));
        }
      }
    }
    if (n.op === 'value' || n.op === 'id') return;
    visit(n.args, nextDepth);
  };
  visit(root, 0);
}

/**
 * Converts a CEL value to plain JSON data: BigInt/uint → number when safe (else decimal string),
 * bytes → base64, timestamps → ISO strings, durations → their text, Map → object.
 * Throws on values JSON cannot hold (NaN, Infinity, functions, types).
 */
export function toPlainJson(value: unknown, path = '$'): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new Error(`${path} is ${value}, which JSON cannot represent`);
      return value;
    case 'bigint':
      return bigToPlain(value);
    case 'undefined':
      return null;
    case 'object': {
      if (value === null) return null;
      if (Array.isArray(value)) return value.map((v, i) => toPlainJson(v, `${path}[${i}]`));
      if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
      if (value instanceof Date) return value.toISOString();
      if (value instanceof Map) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of value) {
          const key = String(k);
          if (!UNSAFE_KEYS.has(key)) out[key] = toPlainJson(v, `${path}.${key}`);
        }
        return out;
      }
      const proto = Object.getPrototypeOf(value) as object | null;
      if (proto === Object.prototype || proto === null) {
        const out: Record<string, unknown> = {};
        for (const key of Object.keys(value)) {
          if (!UNSAFE_KEYS.has(key)) out[key] = toPlainJson((value as Record<string, unknown>)[key], `${path}.${key}`);
        }
        return out;
      }
      if (value instanceof UnsignedInt) return bigToPlain(value.valueOf() as bigint);
      if (value instanceof Duration) return String(value);
      throw new Error(`${path} is a ${(value as object).constructor?.name ?? 'value'} that JSON cannot represent`);
    }
    default:
      throw new Error(`${path} is a ${typeof value} that JSON cannot represent`);
  }
}

function bigToPlain(value: bigint): number | string {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value.toString();
}

export function isPlainMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array) && !(value instanceof Date);
}

/** The summary and 1-based position of a cel-js evaluation error. */
export function describeEvaluationError(err: unknown, expression: string): string {
  if (err instanceof RangeError) return `evaluation exceeded a resource limit (${err.message})`;
  const { summary, start } = errorParts(err);
  if (start === undefined) return summary;
  const pos = offsetToPosition(expression, start);
  return `line ${pos.line} column ${pos.column}: ${summary}`;
}
