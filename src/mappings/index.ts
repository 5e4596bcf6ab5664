// Scope mappings and access rules written in CEL, plus validation of the `ak_proxy` claim.
// Pure library: the login flow calls CompiledMappings.evaluate once per login, the request chain
// calls CompiledAccessRules.check per request and validateProxyClaims when it uses the claims.
import RE2 from 're2';
import { refusedHeaderName } from '../http/header-names.js';
import type { ParseResult } from '@marcbachmann/cel-js';
import {
  MappingCompileError,
  MappingEvaluationError,
  MAX_RESULT_JSON_LENGTH,
  compileExpression,
  describeEvaluationError,
  isPlainMap,
  mappingEnvironment,
  ruleEnvironment,
  toPlainJson,
} from './cel.js';

export { MappingCompileError, MappingEvaluationError } from './cel.js';
export { MAX_EXPRESSION_LENGTH, MAX_RESULT_JSON_LENGTH, MAX_COMPREHENSION_NESTING, CEL_LIMITS } from './cel.js';

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

interface CompiledMapping {
  name: string;
  expression: string;
  run: ParseResult;
}

/** Compiles (parses and type-checks) every mapping once. Throws MappingCompileError on the first bad one. */
export function compileMappings(mappings: { name: string; expression: string }[]): CompiledMappings {
  const env = mappingEnvironment();
  const compiled: CompiledMapping[] = mappings.map((m) => ({ name: m.name, expression: m.expression, run: compileExpression(env, m.name, m.expression, 'map') }));
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

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'bigint') return 'an int';
  if (typeof value === 'number') return 'a double';
  return `a ${typeof value}`;
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

const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function isObjectMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

// ---------------------------------------------------------------------------------------------
// ak_proxy validation

export interface ProxyClaimsPolicy {
  /** When set, backend_override's hostname (or host:port) must be one of these (case-insensitive). */
  allowedBackendHosts?: string[];
  /** Let additionalHeaders replace X-authentik-* / X-Forwarded-* headers. */
  allowIdentityHeaderOverride: boolean;
}

export interface ValidatedProxyClaims {
  /** Only the origin of backend_override is used (its path is ignored, as authentik does). */
  backendOverride: { origin: string; host: string } | null;
  hostHeader: string | null;
  /**
   * Headers to set on the upstream request, in claim order. Values are the claim's text; the
   * header stage sends every non-ASCII character as its UTF-8 bytes, exactly once.
   */
  additionalHeaders: [string, string][];
  /** Human-readable, each naming the field; the invalid items are dropped. */
  problems: string[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MAX_HEADER_VALUE_LENGTH = 8192;
const MAX_HEADERS = 64;
const HOST_HEADER = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)(?::(\d{1,5}))?$/;

const NO_PROXY_CLAIMS: ValidatedProxyClaims = Object.freeze({
  backendOverride: null,
  hostHeader: null,
  additionalHeaders: Object.freeze([]) as unknown as [string, string][],
  problems: Object.freeze([]) as unknown as string[],
}) as ValidatedProxyClaims;

/** Validates `claims.ak_proxy` (backend_override, host_header, user_attributes.additionalHeaders). */
export function validateProxyClaims(claims: Record<string, unknown>, policy: ProxyClaimsPolicy): ValidatedProxyClaims {
  const akProxy = claims['ak_proxy'];
  if (akProxy === undefined || akProxy === null) return NO_PROXY_CLAIMS;
  const problems: string[] = [];
  if (!isObjectMap(akProxy)) {
    problems.push(`ak_proxy: must be a map, got ${describeType(akProxy)}; ignored`);
    return { backendOverride: null, hostHeader: null, additionalHeaders: [], problems };
  }
  return {
    backendOverride: validateBackendOverride(akProxy['backend_override'], policy, problems),
    hostHeader: validateHostHeader(akProxy['host_header'], problems),
    additionalHeaders: validateHeaders(akProxy['user_attributes'], policy, problems),
    problems,
  };
}

function validateBackendOverride(value: unknown, policy: ProxyClaimsPolicy, problems: string[]): { origin: string; host: string } | null {
  const field = 'ak_proxy.backend_override';
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') {
    problems.push(`${field}: must be a string, got ${describeType(value)}; ignored`);
    return null;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.push(`${field}: "${clip(value)}" is not an absolute URL; ignored`);
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    problems.push(`${field}: scheme ${url.protocol} is not http: or https:; ignored`);
    return null;
  }
  if (url.username || url.password) {
    problems.push(`${field}: the URL must not contain user information; ignored`);
    return null;
  }
  if (!url.hostname) {
    problems.push(`${field}: the URL has no host; ignored`);
    return null;
  }
  if (policy.allowedBackendHosts) {
    const hostname = url.hostname.toLowerCase();
    const host = url.host.toLowerCase();
    const allowed = policy.allowedBackendHosts.some((h) => {
      const entry = h.trim().toLowerCase();
      return entry === hostname || entry === host;
    });
    if (!allowed) {
      problems.push(`${field}: host ${url.host} is not in allowed_backend_hosts; ignored`);
      return null;
    }
  }
  return { origin: url.origin, host: url.host };
}

function validateHostHeader(value: unknown, problems: string[]): string | null {
  const field = 'ak_proxy.host_header';
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') {
    problems.push(`${field}: must be a string, got ${describeType(value)}; ignored`);
    return null;
  }
  const m = value.length <= 261 ? HOST_HEADER.exec(value) : null;
  const port = m?.[1];
  if (!m || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) {
    problems.push(`${field}: "${clip(value)}" is not a valid host[:port]; ignored`);
    return null;
  }
  return value;
}

function validateHeaders(userAttributes: unknown, policy: ProxyClaimsPolicy, problems: string[]): [string, string][] {
  if (userAttributes === undefined || userAttributes === null) return [];
  if (!isObjectMap(userAttributes)) {
    problems.push(`ak_proxy.user_attributes: must be a map, got ${describeType(userAttributes)}; ignored`);
    return [];
  }
  const headers = userAttributes['additionalHeaders'];
  const field = 'ak_proxy.user_attributes.additionalHeaders';
  if (headers === undefined || headers === null) return [];
  if (!isObjectMap(headers)) {
    problems.push(`${field}: must be a map, got ${describeType(headers)}; ignored`);
    return [];
  }
  const out: [string, string][] = [];
  const seen = new Set<string>();
  for (const name of Object.keys(headers)) {
    const where = `${field}["${clip(name)}"]`;
    if (!TOKEN.test(name)) {
      problems.push(`${where}: not a valid header name (RFC 7230 token); dropped`);
      continue;
    }
    if (name.includes('_')) {
      // Servers that fold `_` into `-` (CGI, WSGI, PHP) could not tell it from a client's copy;
      // authentik drops such names too, and the header stage never sends them.
      problems.push(`${where}: header names with "_" are not sent; dropped`);
      continue;
    }
    const normalized = name.toLowerCase();
    const refused = refusedHeaderName(normalized);
    if (refused !== undefined) {
      problems.push(`${where}: ${refused}; dropped`);
      continue;
    }
    if ((normalized.startsWith('x-authentik-') || normalized.startsWith('x-forwarded-')) && !policy.allowIdentityHeaderOverride) {
      problems.push(`${where}: would override an identity header (allow_identity_header_override is false); dropped`);
      continue;
    }
    if (seen.has(normalized)) {
      problems.push(`${where}: duplicate of an earlier header with the same name; dropped`);
      continue;
    }
    const raw = headers[name];
    let value: string;
    if (typeof raw === 'string') value = raw;
    else if ((typeof raw === 'number' && Number.isFinite(raw)) || typeof raw === 'boolean' || typeof raw === 'bigint') value = String(raw);
    else {
      problems.push(`${where}: value must be a string, number or boolean, got ${describeType(raw)}; dropped`);
      continue;
    }
    if (/[\r\n\0]/.test(value)) {
      problems.push(`${where}: value contains CR, LF or NUL; dropped`);
      continue;
    }
    if (/[\x01-\x08\x0a-\x1f\x7f]/.test(value)) {
      problems.push(`${where}: value contains a control character; dropped`);
      continue;
    }
    if (value.length > MAX_HEADER_VALUE_LENGTH) {
      problems.push(`${where}: value is longer than ${MAX_HEADER_VALUE_LENGTH} characters; dropped`);
      continue;
    }
    if (out.length >= MAX_HEADERS) {
      problems.push(`${where}: more than ${MAX_HEADERS} headers; dropped`);
      continue;
    }
    seen.add(normalized);
    out.push([name, value]);
  }
  return out;
}

function clip(text: string): string {
  const oneLine = text.replace(/[\x00-\x1f\x7f]/g, '?');
  return oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine;
}

// ---------------------------------------------------------------------------------------------
// Access rules

export interface CompiledAccessRules {
  readonly count: number;
  /** Every rule whose paths match (or that has none) must return true; errors deny. */
  check(path: string, claims: Record<string, unknown>): { allowed: true } | { allowed: false; rule: string };
}

interface CompiledRule {
  paths: RE2[] | null;
  run: ParseResult;
  denied: { allowed: false; rule: string };
}

const ALLOWED = Object.freeze({ allowed: true as const });

/** The label used for a rule in errors and in check() results: its name, else `access_rules[i]`. */
export function accessRuleLabel(rule: { name?: string }, index: number): string {
  return rule.name ?? `access_rules[${index}]`;
}

/** Compiles every rule's path regexes (RE2) and `when` once. Throws MappingCompileError. */
export function compileAccessRules(rules: { name?: string; paths?: string[]; when: string }[]): CompiledAccessRules {
  const env = ruleEnvironment();
  const compiled: CompiledRule[] = rules.map((rule, i) => {
    const label = accessRuleLabel(rule, i);
    const paths =
      rule.paths === undefined
        ? null
        : rule.paths.map((pattern, j) => {
            try {
              return new RE2(pattern);
            } catch (err) {
              throw new MappingCompileError(label, `paths[${j}] "${pattern}" is not a valid RE2 regex: ${(err as Error).message}`);
            }
          });
    return { paths, run: compileExpression(env, label, rule.when, 'bool'), denied: Object.freeze({ allowed: false as const, rule: label }) };
  });
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
