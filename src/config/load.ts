// Reads, interpolates and validates the configuration file. One validator serves both the
// start-up path and `portcullis --check`; every error names the field and its line in the file.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { LineCounter, parseDocument, isMap, isSeq, type Node } from "yaml";
import RE2 from 're2';
import { ConfigSchema, type PortcullisConfig, type ProviderConfig } from './schema.js';
import { parseDuration } from './duration.js';
import { normalizeHost } from '../http/normalize.js';
import { refusedHeaderName } from '../http/header-names.js';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

export interface ConfigIssue {
  /** Machine-readable code, e.g. `config.invalid_regex`. */
  code: string;
  /** JSON-pointer-like path of the field, e.g. `providers[0].skip_path_regex`. */
  field: string;
  message: string;
  line?: number;
  column?: number;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly issues: ConfigIssue[],
  ) {
    super(`${source}: ${issues.length} configuration error${issues.length === 1 ? '' : 's'}\n` + issues.map((i) => '  ' + formatIssue(i)).join('\n'));
    this.name = 'ConfigError';
  }
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line ? `line ${issue.line}${issue.column ? `:${issue.column}` : ''}: ` : '';
  return `${where}${issue.field || '(root)'}: ${issue.message} [${issue.code}]`;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: false });
addFormats(ajv);
const validateSchema = ajv.compile(ConfigSchema);

/** Extra checks on validated config, contributed by stages that compile things at load (regexes, CEL). */
export type ConfigCheck = (config: PortcullisConfig, report: (field: (string | number)[], code: string, message: string) => void) => void;
const extraChecks: ConfigCheck[] = [];
export function registerConfigCheck(check: ConfigCheck): void {
  extraChecks.push(check);
}

export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): PortcullisConfig {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [{ code: 'config.unreadable', field: '', message: (err as Error).message }]);
  }
  return parseConfig(text, { source: path, baseDir: dirname(absolute), env });
}

export interface ParseOptions {
  source?: string;
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
}

export function parseConfig(text: string, opts: ParseOptions = {}): PortcullisConfig {
  const source = opts.source ?? '<config>';
  const baseDir = opts.baseDir ?? process.cwd();
  const env = opts.env ?? process.env;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const locate = (path: (string | number)[]): { line?: number; column?: number } => {
    // Walk down as far as the path exists; a missing key points at its parent.
    let node: unknown = doc.contents;
    for (const key of path) {
      let next: unknown;
      if (isMap(node)) next = node.get(key, true);
      else if (isSeq(node) && typeof key === 'number') next = node.get(key, true);
      if (next === undefined) break;
      node = next;
    }
    const range = (node as Node | null)?.range;
    if (!range) return {};
    const pos = lineCounter.linePos(range[0]);
    return { line: pos.line, column: pos.col };
  };

  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => {
        // Without prettyErrors, yaml gives only the offset: the line comes from the counter.
        const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
        return { code: 'config.yaml_syntax', field: '', message: e.message.split('\n')[0] ?? e.message, line: pos?.line, column: pos?.col };
      }),
    );
  }

  const issues: ConfigIssue[] = [];
  const report = (path: (string | number)[], code: string, message: string): void => {
    issues.push({ code, field: fieldName(path), message, ...locate(path) });
  };

  const raw = doc.toJS() as unknown;
  const interpolated = interpolate(raw, [], env, baseDir, report);
  if (issues.length > 0) throw new ConfigError(source, issues);

  if (!validateSchema(interpolated)) {
    for (const err of dedupeErrors(validateSchema.errors ?? [])) {
      const path = pointerToPath(err.instancePath);
      if (err.keyword === 'additionalProperties') {
        const extra = (err.params as { additionalProperty: string }).additionalProperty;
        report([...path, extra], 'config.unknown_field', `unknown field "${extra}"`);
      } else if (err.keyword === 'required') {
        const missing = (err.params as { missingProperty: string }).missingProperty;
        report(path, 'config.missing_field', `missing required field "${missing}"`);
      } else {
        report(path, 'config.invalid_value', err.message ?? 'invalid value');
      }
    }
    throw new ConfigError(source, issues);
  }

  const config = interpolated as Omit<PortcullisConfig, 'baseDir'>;
  const full: PortcullisConfig = {
    outpost: config.outpost ?? (applyOutpostDefaults() as PortcullisConfig['outpost']),
    providers: config.providers as ProviderConfig[],
    pipeline: config.pipeline,
    baseDir,
    source,
  };
  full.outpost.listeners.http = full.outpost.listeners.http === undefined ? '0.0.0.0:9000' : full.outpost.listeners.http;
  full.outpost.listeners.https = full.outpost.listeners.https === undefined ? '0.0.0.0:9443' : full.outpost.listeners.https;

  semanticChecks(full, report);
  for (const check of extraChecks) check(full, report);
  if (issues.length > 0) throw new ConfigError(source, issues);
  return full;
}

function applyOutpostDefaults(): unknown {
  const holder = { outpost: {} } as { outpost: unknown };
  ajv.validate({ type: 'object', properties: { outpost: ConfigSchema.properties.outpost } }, holder);
  return holder.outpost;
}

/** Checks the schema cannot express: cross-field rules, regexes, CIDRs, unique hosts. */
function semanticChecks(config: PortcullisConfig, report: (p: (string | number)[], code: string, msg: string) => void): void {
  redisStoreChecks(config, report);
  config.outpost.trusted_proxies.forEach((cidr, i) => {
    if (!isValidCidr(cidr)) report(['outpost', 'trusted_proxies', i], 'config.invalid_cidr', `"${cidr}" is not an IP address or CIDR`);
  });
  // Connections to one origin share one pool and so one TLS setting: refuse contradictions.
  const tlsByOrigin = new Map<string, { verify: boolean; index: number }>();
  config.providers.forEach((p, i) => {
    if (!p.internal_host) return;
    const origin = new URL(p.internal_host).origin;
    const seen = tlsByOrigin.get(origin);
    if (seen && seen.verify !== p.internal_host_ssl_validation) {
      report(['providers', i, 'internal_host_ssl_validation'], 'config.conflicting_tls', `providers[${seen.index}] uses the same internal_host origin (${origin}) with internal_host_ssl_validation ${seen.verify}; connections to one origin share one TLS setting`);
    }
    if (!seen) tlsByOrigin.set(origin, { verify: p.internal_host_ssl_validation, index: i });
  });
  const hosts = new Map<string, number>();
  const names = new Map<string, number>();
  config.providers.forEach((p, i) => {
    if (p.mode === 'proxy' && !p.internal_host) report(['providers', i], 'config.missing_field', 'internal_host is required in proxy mode');
    if (p.basic_auth_enabled && !p.basic_auth_password_attribute) {
      report(['providers', i, 'basic_auth_enabled'], 'config.missing_field', 'basic_auth_password_attribute is required when basic_auth_enabled is true');
    }
    if (p.mode === 'forward_domain' && !p.cookie_domain) {
      report(['providers', i, 'mode'], 'config.missing_field', 'forward_domain needs cookie_domain (the domain whose hosts share the login)');
    }
    try {
      p.access_token_validity = parseDuration(p.access_token_validity);
    } catch (err) {
      report(['providers', i, 'access_token_validity'], 'config.invalid_value', (err as Error).message);
    }
    const issuer = new URL(p.issuer);
    if (issuer.protocol !== 'https:' && !(issuer.protocol === 'http:' && isLoopbackHostname(issuer.hostname))) {
      report(['providers', i, 'issuer'], 'config.insecure_issuer', 'the issuer must use https (plain http is allowed only on loopback, for demos and tests)');
    }
    const url = new URL(p.external_host);
    if (url.search || url.hash) report(['providers', i, 'external_host'], 'config.invalid_value', 'external_host must not have a query or fragment');
    // The outpost's endpoints live at /outpost.goauthentik.io/ on the host itself, whatever the
    // application's base path: a sub-path would send every login to <path>/outpost.goauthentik.io/start,
    // which is proxied instead of answered, and loop with an ever-growing rd.
    if (url.pathname !== '/' && url.pathname !== '') {
      report(['providers', i, 'external_host'], 'config.external_host_path', `external_host must be a scheme and host only (with an optional port), without a path: "${url.pathname}" is not supported; use ${url.origin}`);
    }
    // The routing key, as requests are matched: case and a trailing dot do not make another host.
    const key = normalizeHost(url.host, url.protocol === 'https:' ? 'https' : 'http') || url.host.toLowerCase();
    if (hosts.has(key)) report(['providers', i, 'external_host'], 'config.duplicate_host', `external_host ${key} is already used by providers[${hosts.get(key)}] (host names are compared without case and without a trailing dot)`);
    hosts.set(key, i);
    if (names.has(p.name)) report(['providers', i, 'name'], 'config.duplicate_name', `provider name "${p.name}" is already used by providers[${names.get(p.name)}]`);
    names.set(p.name, i);
    // Each non-blank line of skip_path_regex is one RE2 pattern, compiled here so that a bad
    // line stops the start rather than silently matching nothing (or everything).
    skipPatternLines(p.skip_path_regex).forEach(({ pattern, lineIndex }) => {
      try {
        new RE2(pattern);
      } catch (err) {
        report(['providers', i, 'skip_path_regex'], 'config.invalid_regex', `line ${lineIndex + 1} of skip_path_regex ("${pattern}") is not a valid RE2 regex: ${(err as Error).message}`);
      }
    });
    p.additional_header_names.forEach((name, j) => {
      const refused = refusedHeaderName(name.toLowerCase());
      if (refused !== undefined) report(['providers', i, 'additional_header_names', j], 'config.invalid_value', `${refused}: "${name}" can never be an additional header`);
    });
    p.access_rules.forEach((rule, r) => {
      rule.paths?.forEach((pattern, j) => {
        try {
          new RE2(pattern);
        } catch (err) {
          report(['providers', i, 'access_rules', r, 'paths', j], 'config.invalid_regex', `"${pattern}" is not a valid RE2 regex: ${(err as Error).message}`);
        }
      });
    });
  });
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

export function isLoopbackHostname(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function isValidCidr(value: string): boolean {
  const [addr, bits, ...rest] = value.split('/');
  if (rest.length > 0 || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

const ENV_REF = /\$\{([^}]+)\}/g;

/** Replaces `${NAME}` with an environment variable and `${file:PATH}` with a file's contents. */
function interpolate(
  value: unknown,
  path: (string | number)[],
  env: NodeJS.ProcessEnv,
  baseDir: string,
  report: (p: (string | number)[], code: string, msg: string) => void,
): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    return value.replace(ENV_REF, (_m, ref: string) => {
      if (ref.startsWith('file:')) {
        const file = resolve(baseDir, ref.slice(5));
        try {
          return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
        } catch (err) {
          report(path, 'config.secret_file', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
          return '';
        }
      }
      const v = env[ref];
      if (v === undefined) {
        report(path, 'config.missing_env', `environment variable ${ref} is not set`);
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, i], env, baseDir, report));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, [...path, k], env, baseDir, report);
    return out;
  }
  return value;
}

function pointerToPath(pointer: string): (string | number)[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function fieldName(path: (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

/** anyOf/oneOf produce one error per branch; keep the most useful ones. */
function dedupeErrors(errors: ErrorObject[]): ErrorObject[] {
  const seen = new Set<string>();
  const out: ErrorObject[] = [];
  // A union of literals (mode, log_level, …) fails once per literal: say it once, with the choices.
  const constants = new Map<string, ErrorObject>();
  for (const e of errors) {
    if (e.keyword !== 'const') continue;
    const allowed = JSON.stringify((e.params as { allowedValue: unknown }).allowedValue);
    const merged = constants.get(e.instancePath);
    if (merged) merged.message += `, ${allowed}`;
    else constants.set(e.instancePath, { ...e, message: `must be one of ${allowed}` });
  }
  for (const e of errors) {
    // Combinator summaries ('must match a schema in anyOf', 'must match "then" schema') repeat what
    // the branch's own errors say.
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if') continue;
    if (e.keyword === 'const') {
      const merged = constants.get(e.instancePath);
      if (merged && !out.includes(merged)) out.push(merged);
      continue;
    }
    const key = `${e.instancePath}|${e.keyword}|${JSON.stringify(e.params)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(e);
  }
  return out;
}

/** A Redis store names exactly one deployment; credentials go where that deployment takes them. */
function redisStoreChecks(config: PortcullisConfig, report: (p: (string | number)[], code: string, msg: string) => void): void {
  const store = config.outpost.session_store;
  if (store.type !== 'redis') return;
  const at = ['outpost', 'session_store'];
  const given = (['url', 'sentinel', 'cluster'] as const).filter((k) => store[k] !== undefined);
  if (given.length !== 1) {
    report(at, given.length === 0 ? 'config.missing_field' : 'config.conflicting_fields', `give exactly one of url, sentinel or cluster${given.length > 1 ? ` (found ${given.join(' and ')})` : ''}`);
    return;
  }
  if (store.url !== undefined) {
    for (const k of ['username', 'password', 'tls', 'db'] as const) {
      if (store[k] !== undefined) report([...at, k], 'config.conflicting_fields', `${k} is part of the url (redis://user:password@host:port/db, rediss:// for TLS)`);
    }
  }
  if (store.cluster !== undefined) {
    if (store.db !== undefined) report([...at, 'db'], 'config.invalid_value', 'a Redis Cluster has only database 0');
    if ((store.wait_replicas ?? 0) > 0) report([...at, 'wait_replicas'], 'config.invalid_value', 'wait_replicas is not available with a Redis Cluster');
  }
}
