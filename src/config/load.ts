// Reads, interpolates and validates the configuration file. One validator serves both the
// start-up path and `portcullis --check`; every error names the field and its line in the file.
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import type { ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isSeq, type Node, type YAMLError } from 'yaml';
import { ajv } from './ajv.js';
import { ConfigSchema, type PortcullisConfig, type ProviderConfig } from './schema.js';
import { parseDuration } from './duration.js';
import { normalizeHost } from '../http/normalize.js';
import { refusedHeaderName } from '../http/header-names.js';
import { AccessRulePathError, MappingCompileError, accessRuleLabel, accessRulesOf, compileAccessRule, compileMapping, mappingsOf } from '../mappings/index.js';
import { SkipPathsError, compileSkipPaths, keepCompiled } from './compiled.js';

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
  const what = issue.field ? `${issue.field}: ` : issue.code === 'config.yaml_syntax' ? 'YAML syntax error: ' : '';
  return `${where}${what}${issue.message} [${issue.code}]`;
}

const validateSchema = ajv.compile(ConfigSchema);

/** Where each parsed config's fields are in its file: errors found later (stage options) name the line too. */
const locators = new WeakMap<PortcullisConfig, (path: (string | number)[]) => { line?: number; column?: number }>();

/** The line and column of a field of a config read by parseConfig (empty when unknown). */
export function locateConfigField(config: PortcullisConfig, path: (string | number)[]): { line?: number; column?: number } {
  return locators.get(config)?.(path) ?? {};
}

export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): PortcullisConfig {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [{ code: 'config.unreadable', field: '', message: `cannot read ${absolute}: ${describeFsError(err)}` }]);
  }
  return parseConfig(text, { source: path, baseDir: dirname(absolute), env });
}

export interface ParseOptions {
  source?: string;
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Check the files the config names (TLS certificates and keys exist and parse, the embedded
   * store's journal can be written). Default true; nothing is created or contacted.
   */
  resources?: boolean;
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

  if (doc.errors.length > 0) throw new ConfigError(source, [yamlSyntaxIssue(text, doc.errors, lineCounter)]);

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

  locators.set(full, locate);
  semanticChecks(full, report);
  if (opts.resources !== false) resourceChecks(full, report);
  compileProviders(full, report);
  if (issues.length > 0) throw new ConfigError(source, issues);
  return full;
}

/**
 * One issue for a YAML syntax error: the parser's first error (the others follow from it), at the
 * line that is wrong, saying what is wrong. The parser reports an over-indented key as a compact
 * mapping on the line above ("issuer: x" followed by a deeper "client_id: y"): that case names the
 * deeper line.
 */
function yamlSyntaxIssue(text: string, errors: readonly YAMLError[], lines: LineCounter): ConfigIssue {
  const first = errors[0]!;
  const at = lines.linePos(first.pos[0]);
  const issue = (line: number, column: number, message: string): ConfigIssue => ({ code: 'config.yaml_syntax', field: '', message, line, column });
  if (first.code === 'BLOCK_AS_IMPLICIT_KEY') {
    const textLines = text.split(/\r?\n/);
    const keyLine = textLines[at.line - 1] ?? '';
    const key = /^\s*(?:-\s+)?([^:#]+):/.exec(keyLine)?.[1]?.trim();
    const multiline = errors.find((e) => e.code === 'MULTILINE_IMPLICIT_KEY' && e.pos[0] === first.pos[0]);
    if (multiline) {
      let next = at.line; // 0-based index of the following line
      while (next < textLines.length && /^\s*(#.*)?$/.test(textLines[next]!)) next++;
      const column = (textLines[next] ?? '').search(/\S/) + 1;
      return issue(
        next + 1,
        column,
        `this line is indented deeper than ${key ? `"${key}"` : 'the key'} on line ${at.line}, which already has a value; keys of one mapping start in the same column`,
      );
    }
    return issue(at.line, at.col, `a plain value cannot contain ": " (on ${key ? `"${key}"` : 'this key'}): quote the value, or start a nested mapping on its own line`);
  }
  // An unclosed quote or flow collection is noticed at the end of the file: name where it opens.
  const unclosed = /closing "quote/.test(first.message) ? /["']/ : /^Flow (sequence|mapping)/.test(first.message) ? /[[{]/ : null;
  if (unclosed) {
    const textLines = text.split(/\r?\n/);
    for (let i = Math.min(at.line, textLines.length) - 1; i >= 0; i--) {
      const column = textLines[i]!.search(unclosed);
      if (column !== -1) {
        const what = textLines[i]![column] === '[' ? 'the [ list' : textLines[i]![column] === '{' ? 'the { mapping' : 'the quoted string';
        return issue(i + 1, column + 1, `${what} that starts here is not closed`);
      }
    }
  }
  if (first.code === 'TAB_AS_INDENT') return issue(at.line, at.col, 'a tab is used for indentation: indent with spaces');
  if (first.code === 'DUPLICATE_KEY') return issue(at.line, at.col, 'this key appears twice in the same mapping');
  return issue(at.line, at.col, first.message.split('\n')[0] ?? first.message);
}

function applyOutpostDefaults(): unknown {
  const holder = { outpost: {} } as { outpost: unknown };
  ajv.validate({ type: 'object', properties: { outpost: ConfigSchema.properties.outpost } }, holder);
  return holder.outpost;
}

/** Checks the schema cannot express: cross-field rules, regexes, CIDRs, unique hosts. */
function semanticChecks(config: PortcullisConfig, report: (p: (string | number)[], code: string, msg: string) => void): void {
  redisStoreChecks(config, report);
  workersChecks(config, report);
  // Listener ports: in range, and no two listeners on one port of one address.
  const listeners: [(string | number)[], string | null | undefined][] = [
    [['outpost', 'listeners', 'http'], config.outpost.listeners.http],
    [['outpost', 'listeners', 'https'], config.outpost.listeners.https],
    [['outpost', 'metrics', 'listen'], config.outpost.metrics?.listen],
  ];
  const bound = new Map<string, string>();
  for (const [path, address] of listeners) {
    if (!address) continue;
    const colon = address.lastIndexOf(':');
    const port = Number(address.slice(colon + 1));
    if (port > 65535) {
      report(path, 'config.invalid_port', `port ${port} is out of range (0-65535)`);
      continue;
    }
    const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
    if (port === 0) continue;
    const wildcard = host === '' || host === '0.0.0.0' || host === '::';
    for (const [other, field] of bound) {
      const [otherHost, otherPort] = [other.slice(0, other.lastIndexOf('|')), Number(other.slice(other.lastIndexOf('|') + 1))];
      const otherWildcard = otherHost === '' || otherHost === '0.0.0.0' || otherHost === '::';
      if (otherPort === port && (otherHost === host || wildcard || otherWildcard)) {
        report(path, 'config.duplicate_port', `port ${port} is already used by ${field}`);
      }
    }
    bound.set(`${host}|${port}`, fieldName(path));
  }

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
    try {
      p.session_max_age = parseDuration(p.session_max_age);
    } catch (err) {
      report(['providers', i, 'session_max_age'], 'config.invalid_value', (err as Error).message);
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
    p.additional_header_names.forEach((name, j) => {
      const refused = refusedHeaderName(name.toLowerCase());
      if (refused !== undefined) report(['providers', i, 'additional_header_names', j], 'config.invalid_value', `${refused}: "${name}" can never be an additional header`);
    });
  });
}

/**
 * Compiles what each provider runs — skip_path_regex, the scope mappings, the access rules — so
 * that a bad regex or expression stops the start (and `portcullis --check`) with its field and
 * line, rather than silently matching nothing (or everything). What compiles is kept for the
 * stages (compiled.ts): nothing is compiled twice.
 */
function compileProviders(config: PortcullisConfig, report: (p: (string | number)[], code: string, msg: string) => void): void {
  config.providers.forEach((p, i) => {
    let complete = true;
    const skipPaths = compileSkipPaths(p.skip_path_regex);
    if (skipPaths instanceof SkipPathsError) {
      complete = false;
      for (const problem of skipPaths.problems) report(['providers', i, 'skip_path_regex'], 'config.invalid_regex', problem.message);
    }
    const mappings = p.mappings.flatMap((mapping, j) => {
      try {
        return [compileMapping(mapping)];
      } catch (err) {
        complete = false;
        report(['providers', i, 'mappings', j, 'expression'], 'config.invalid_expression', `provider ${p.name}, mapping '${mapping.name}', ${describeCompileError(err)}`);
        return [];
      }
    });
    const rules = p.access_rules.flatMap((rule, r) => {
      try {
        return [compileAccessRule(rule, r)];
      } catch (err) {
        complete = false;
        if (err instanceof AccessRulePathError) {
          report(['providers', i, 'access_rules', r, 'paths', err.index], 'config.invalid_regex', `"${err.pattern}" is not a valid RE2 regex: ${err.reason}`);
        } else {
          report(['providers', i, 'access_rules', r, 'when'], 'config.invalid_expression', `provider ${p.name}, access rule '${accessRuleLabel(rule, r)}', ${describeCompileError(err)}`);
        }
        return [];
      }
    });
    if (complete && !(skipPaths instanceof SkipPathsError)) {
      keepCompiled(p, { skipPaths, mappings: mappingsOf(mappings), accessRules: rules.length > 0 ? accessRulesOf(rules) : null });
    }
  });
}

function describeCompileError(err: unknown): string {
  if (err instanceof MappingCompileError) {
    return `${err.position ? `line ${err.position.line} column ${err.position.column}: ` : ''}${err.detail}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * The files the config names, checked without creating anything: each TLS certificate and key
 * is read and parsed (and the key must belong to the certificate), and the embedded store's
 * journal must be writable (the file, or the nearest folder that exists: the store creates the rest).
 */
function resourceChecks(config: PortcullisConfig, report: (p: (string | number)[], code: string, msg: string) => void): void {
  config.outpost.tls.certificates.forEach(({ cert, key }, i) => {
    const read = (field: 'cert' | 'key', path: string): string | undefined => {
      const file = resolve(config.baseDir, path);
      try {
        return readFileSync(file, 'utf8');
      } catch (err) {
        report(['outpost', 'tls', 'certificates', i, field], 'config.unreadable_file', `cannot read ${file}: ${describeFsError(err)}`);
        return undefined;
      }
    };
    const certPem = read('cert', cert);
    const keyPem = read('key', key);
    let x509: X509Certificate | undefined;
    let privateKey: KeyObject | undefined;
    if (certPem !== undefined) {
      try {
        x509 = new X509Certificate(certPem);
      } catch {
        report(['outpost', 'tls', 'certificates', i, 'cert'], 'config.invalid_certificate', `${resolve(config.baseDir, cert)} is not a PEM certificate`);
      }
    }
    if (keyPem !== undefined) {
      try {
        privateKey = createPrivateKey(keyPem);
      } catch {
        report(['outpost', 'tls', 'certificates', i, 'key'], 'config.invalid_key', `${resolve(config.baseDir, key)} is not a PEM private key (or it is encrypted)`);
      }
    }
    if (x509 && privateKey && !x509.checkPrivateKey(privateKey)) {
      report(['outpost', 'tls', 'certificates', i, 'key'], 'config.invalid_key', `${resolve(config.baseDir, key)} is not the private key of ${resolve(config.baseDir, cert)}`);
    }
  });
  const store = config.outpost.session_store;
  if (store.type === 'embedded') {
    const problem = unwritable(resolve(config.baseDir, store.path));
    if (problem) report(['outpost', 'session_store', 'path'], 'config.unwritable_path', problem);
  }
}

/** Why `file` cannot be written (or created), or undefined when it can. */
function unwritable(file: string): string | undefined {
  try {
    const st = statSync(file);
    if (!st.isFile()) return `${file} is not a file`;
    accessSync(file, constants.R_OK | constants.W_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return `cannot write ${file}: ${describeFsError(err)}`;
  }
  // The file does not exist yet: the nearest existing ancestor must be a writable folder.
  let dir = dirname(file);
  for (;;) {
    try {
      if (!statSync(dir).isDirectory()) return `cannot create ${file}: ${dir} is not a folder`;
      accessSync(dir, constants.W_OK | constants.X_OK);
      return undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && dirname(dir) !== dir) {
        dir = dirname(dir);
        continue;
      }
      return `cannot create ${file}: ${dir}: ${describeFsError(err)}`;
    }
  }
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const known: Record<string, string> = {
    ENOENT: 'no such file',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EISDIR: 'it is a folder',
    ENOTDIR: 'a part of the path is not a folder',
    EROFS: 'read-only file system',
  };
  return (code && known[code]) ?? (code || (err as Error).message);
}

/** The non-blank lines of a skip_path_regex field (kept here for its old importers). */
export { skipPatternLines } from './compiled.js';

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

export function pointerToPath(pointer: string): (string | number)[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

export function fieldName(path: (string | number)[]): string {
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

/**
 * Whether processes can share the configured store, so that a sign-out through one worker is
 * seen by all. Both built-in stores are: Redis, and the embedded SQLite database (every read goes
 * to the file, WAL lets processes read while one writes). A store added later that keeps its
 * sessions in one process's memory must answer false here.
 */
export function storeIsShared(config: PortcullisConfig): boolean {
  const type: string = config.outpost.session_store.type;
  return type === 'redis' || type === 'embedded';
}

/** Several workers need a store they share: a sign-out through one must end the session on all. */
function workersChecks(config: PortcullisConfig, report: (p: (string | number)[], code: string, msg: string) => void): void {
  const setting = config.outpost.workers;
  if (typeof setting === 'number' && setting > 1 && !storeIsShared(config)) {
    report(
      ['outpost', 'workers'],
      'config.workers_need_shared_store',
      `${setting} workers need a session store they share (a sign-out through one must end the session on all): set outpost.session_store to { type: redis, url: … }, or workers to 1`,
    );
  }
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
