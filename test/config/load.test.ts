// The configuration loader: schema, defaults, interpolation and the checks the schema cannot
// express. Every error names the field and its line in the file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, loadConfigFile, ConfigError, type ConfigIssue } from '../../src/config/index.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** One provider; `extra` lines are appended inside it (4-space indent). Lines 1–9. */
const provider = (extra = '', overrides: Record<string, string> = {}) => {
  const fields: Record<string, string> = {
    name: 'demo',
    issuer: 'https://idp.example.com/application/o/demo/',
    client_id: 'demo',
    client_secret: 'secret',
    cookie_secret: '0123456789abcdef0123456789abcdef',
    external_host: 'https://app.example.com',
    internal_host: 'http://127.0.0.1:8080',
    ...overrides,
  };
  const lines = Object.entries(fields)
    .filter(([, v]) => v !== '')
    .map(([k, v], i) => `${i === 0 ? '  - ' : '    '}${k}: ${v}`);
  return lines.join('\n') + '\n' + extra;
};
const minimal = (extra = '', overrides: Record<string, string> = {}) => `providers:\n${provider(extra, overrides)}`;

function rejects(text: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(text, { env, baseDir: dir, source: 'test.yaml' });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the configuration to be rejected');
}

function only(err: ConfigError): ConfigIssue {
  assert.equal(err.issues.length, 1, err.message);
  return err.issues[0]!;
}

test('a minimal file loads with every default applied', () => {
  const config = parseConfig(minimal(), { env: {}, baseDir: dir });
  assert.equal(config.baseDir, dir);
  assert.deepEqual(config.outpost.listeners, { http: '0.0.0.0:9000', https: '0.0.0.0:9443', https_http2: true });
  assert.deepEqual(config.outpost.trusted_proxies, []);
  assert.equal(config.outpost.name, 'portcullis');
  assert.deepEqual(config.outpost.session_store, { type: 'embedded', path: '.portcullis/sessions.db', max_sessions_per_user: 100 });
  assert.equal(config.outpost.log_level, 'info');
  assert.equal(config.outpost.upstream_timeout, 30);
  assert.equal(config.pipeline, undefined);
  const p = config.providers[0]!;
  assert.equal(p.mode, 'proxy');
  assert.equal(p.access_token_validity, 3600);
  assert.deepEqual(p.scopes_to_request, ['openid', 'profile', 'email', 'entitlements', 'ak_proxy']);
  assert.equal(p.token_endpoint_auth_method, 'client_secret_basic');
  assert.equal(p.internal_host_ssl_validation, true);
  assert.equal(p.intercept_header_auth, true);
  assert.equal(p.cookie_domain, '');
  assert.equal(p.skip_path_regex, '');
  assert.deepEqual(p.mappings, []);
  assert.deepEqual(p.access_rules, []);
});

test('listeners given in part keep the other default; null disables a listener', () => {
  const config = parseConfig(`outpost:\n  listeners:\n    http: "127.0.0.1:8000"\n    https: null\n${minimal()}`, { env: {} });
  assert.deepEqual(config.outpost.listeners, { http: '127.0.0.1:8000', https: null, https_http2: true });
  const partial = parseConfig(`outpost:\n  name: edge\n${minimal()}`, { env: {} });
  assert.deepEqual(partial.outpost.listeners, { http: '0.0.0.0:9000', https: '0.0.0.0:9443', https_http2: true });
  assert.equal(partial.outpost.name, 'edge');
});

test('an unknown key at any level is refused with its field and line', () => {
  const root = only(rejects(`${minimal()}colour: red\n`));
  assert.deepEqual([root.code, root.field, root.line], ['config.unknown_field', 'colour', 9]);
  assert.match(root.message, /unknown field "colour"/);

  const outpost = only(rejects(`outpost:\n  listeners:\n    htp: ":9000"\n${minimal()}`));
  assert.deepEqual([outpost.field, outpost.line], ['outpost.listeners.htp', 3]);

  const inProvider = only(rejects(minimal('    colour: red\n')));
  assert.deepEqual([inProvider.field, inProvider.line], ['providers[0].colour', 9]);

  const inMapping = only(rejects(minimal('    mappings:\n      - name: x\n        expression: "{}"\n        extra: 1\n')));
  assert.deepEqual([inMapping.field, inMapping.line], ['providers[0].mappings[0].extra', 12]);

  const inPipeline = only(rejects(`${minimal()}pipeline:\n  - stage: auth\n    option: {}\n`));
  assert.deepEqual([inPipeline.field, inPipeline.line], ['pipeline[0].option', 11]);

  // The formatted message carries it too.
  assert.match(rejects(minimal('    colour: red\n')).message, /^test\.yaml: 1 configuration error\n {2}line 9:\d+: providers\[0\]\.colour: unknown field "colour" \[config\.unknown_field\]$/);
});

test('a missing required field is named, at its parent\'s line', () => {
  const issue = only(rejects(minimal('', { client_id: '' })));
  assert.equal(issue.code, 'config.missing_field');
  assert.equal(issue.field, 'providers[0]');
  assert.equal(issue.line, 2);
  assert.match(issue.message, /missing required field "client_id"/);
  const noProviders = only(rejects('outpost:\n  name: x\n'));
  assert.match(noProviders.message, /missing required field "providers"/);
});

test('several errors are reported together', () => {
  const err = rejects(minimal('    colour: red\n    mode: reverse\n', { cookie_secret: 'short' }));
  const fields = err.issues.map((i) => i.field).sort();
  assert.deepEqual(fields, ['providers[0].colour', 'providers[0].cookie_secret', 'providers[0].mode']);
  assert.match(err.message, /^test\.yaml: 3 configuration errors/);
});

test('a value outside a list of choices is reported once, with the choices', () => {
  const mode = only(rejects(minimal('    mode: reverse\n')));
  assert.equal(mode.field, 'providers[0].mode');
  assert.equal(mode.line, 9);
  assert.equal(mode.message, 'must be one of "proxy", "forward_single", "forward_domain"');
  const level = only(rejects(`outpost:\n  log_level: loud\n${minimal()}`));
  assert.equal(level.field, 'outpost.log_level');
  assert.match(level.message, /^must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"$/);
});

test('a YAML syntax error names its line', () => {
  const err = rejects('providers:\n  - name: demo\n  issuer: : x\n');
  assert.ok(err.issues.length >= 1);
  assert.equal(err.issues[0]!.code, 'config.yaml_syntax');
  assert.equal(err.issues[0]!.line, 3, err.message);
  assert.match(err.message, /line 3:\d+: YAML syntax error: /);
  assert.doesNotMatch(err.message, /\(root\)/);
  const unclosed = only(rejects('providers:\n  - name: demo\n    issuer: [unclosed\n'));
  assert.equal(unclosed.code, 'config.yaml_syntax');
  // Noticed at the end of the file, reported where the list opens.
  assert.deepEqual([unclosed.line, unclosed.column, unclosed.message], [3, 13, 'the [ list that starts here is not closed']);
  const quote = only(rejects('providers:\n  - name: "demo\n    issuer: x\n'));
  assert.deepEqual([quote.line, quote.column, quote.message], [2, 11, 'the quoted string that starts here is not closed']);
});

test('YAML syntax errors: one message, at the line that is wrong, saying what is wrong', () => {
  // An over-indented key: the parser complains about the line above; the issue names the deeper line.
  const deeper = only(rejects('providers:\n  - name: demo\n    issuer: https://idp.example.com/\n      client_id: demo\n'));
  assert.equal(deeper.code, 'config.yaml_syntax');
  assert.deepEqual([deeper.line, deeper.column], [4, 7]);
  assert.match(deeper.message, /indented deeper than "issuer" on line 3/);
  const tab = only(rejects('providers:\n\t- name: demo\n'));
  assert.deepEqual([tab.line, tab.message], [2, 'a tab is used for indentation: indent with spaces']);
  const colon = only(rejects('outpost:\n  name: a: b\n' + minimal()));
  assert.equal(colon.line, 2);
  assert.match(colon.message, /cannot contain ": " \(on "name"\): quote the value/);
  const twice = only(rejects('outpost:\n  name: a\n  name: b\n' + minimal()));
  assert.deepEqual([twice.line, twice.message], [3, 'this key appears twice in the same mapping']);
});

test('an invalid regex in skip_path_regex names the line within the field, and the field\'s line', () => {
  const issue = only(rejects(minimal('    skip_path_regex: |\n      ^/public/\n      ^/api/(\n      ^/ok$\n')));
  assert.equal(issue.code, 'config.invalid_regex');
  assert.equal(issue.field, 'providers[0].skip_path_regex');
  assert.equal(issue.line, 9);
  assert.match(issue.message, /^line 2 of skip_path_regex \("\^\/api\/\("\) is not a valid RE2 regex/);
  // Blank lines are skipped but still counted; CRLF files work.
  const crlf = only(rejects(minimal('    skip_path_regex: "^/a/\\r\\n\\r\\n^/b/[\\r\\n"\n')));
  assert.match(crlf.message, /^line 3 of skip_path_regex \("\^\/b\/\["\)/);
  // Backreferences are not RE2.
  assert.match(only(rejects(minimal('    skip_path_regex: "^/(a)\\\\1$"\n'))).message, /line 1 of skip_path_regex/);
  const ok = parseConfig(minimal('    skip_path_regex: "^/public/\\r\\n\\n^/health$"\n'), { env: {} });
  assert.equal(ok.providers[0]!.skip_path_regex, '^/public/\r\n\n^/health$');
});

test('${ENV} is replaced from the environment, once', () => {
  const config = parseConfig(minimal('', { client_secret: '${CLIENT_SECRET}', external_host: 'https://${APP_HOST}:8443' }), {
    env: { CLIENT_SECRET: 'from-env-${NOT_EXPANDED}', APP_HOST: 'app.example.com' },
  });
  assert.equal(config.providers[0]!.client_secret, 'from-env-${NOT_EXPANDED}');
  assert.equal(config.providers[0]!.external_host, 'https://app.example.com:8443');
});

test('a missing environment variable is an error naming it, the field and the line', () => {
  const issue = only(rejects(minimal('', { client_secret: '${CLIENT_SECRET}' }), { OTHER: 'x' }));
  assert.equal(issue.code, 'config.missing_env');
  assert.equal(issue.field, 'providers[0].client_secret');
  assert.equal(issue.line, 5);
  assert.match(issue.message, /environment variable CLIENT_SECRET is not set/);
});

test('${file:path} reads a file relative to the config, dropping one final newline', () => {
  mkdirSync(join(dir, 'secrets'), { recursive: true });
  writeFileSync(join(dir, 'secrets', 'client'), 'from-a-file\n');
  writeFileSync(join(dir, 'secrets', 'cookie'), '0123456789abcdef-from-file\r\n');
  const config = parseConfig(minimal('', { client_secret: '${file:secrets/client}', cookie_secret: '${file:' + join(dir, 'secrets', 'cookie') + '}' }), { env: {}, baseDir: dir });
  assert.equal(config.providers[0]!.client_secret, 'from-a-file');
  assert.equal(config.providers[0]!.cookie_secret, '0123456789abcdef-from-file');

  const issue = only(rejects(minimal('', { client_secret: '${file:secrets/missing}' })));
  assert.equal(issue.code, 'config.secret_file');
  assert.equal(issue.field, 'providers[0].client_secret');
  assert.match(issue.message, /cannot read .*secrets\/missing: ENOENT/);
});

test('loadConfigFile resolves paths against the file\'s directory and names the file in errors', () => {
  const sub = join(dir, 'etc');
  mkdirSync(sub, { recursive: true });
  writeFileSync(join(sub, 'secret.txt'), 'file-secret\n');
  writeFileSync(join(sub, 'portcullis.yaml'), minimal('', { client_secret: '${file:secret.txt}' }));
  const config = loadConfigFile(join(sub, 'portcullis.yaml'), {});
  assert.equal(config.baseDir, sub);
  assert.equal(config.providers[0]!.client_secret, 'file-secret');

  writeFileSync(join(sub, 'bad.yaml'), minimal('    colour: red\n'));
  assert.throws(() => loadConfigFile(join(sub, 'bad.yaml'), {}), (err: unknown) => err instanceof ConfigError && /bad\.yaml: 1 configuration error/.test(err.message));
  assert.throws(() => loadConfigFile(join(sub, 'absent.yaml'), {}), (err: unknown) => err instanceof ConfigError && err.issues[0]!.code === 'config.unreadable');
});

test('a plain-http issuer is refused unless it is on loopback', () => {
  for (const issuer of ['http://idp.example.com/application/o/demo/', 'http://127.0.0.1.nip.io/', 'http://localhost.evil.com/', 'http://10.0.0.1/']) {
    const issue = only(rejects(minimal('', { issuer })));
    assert.equal(issue.code, 'config.insecure_issuer', issuer);
    assert.equal(issue.field, 'providers[0].issuer');
    assert.equal(issue.line, 3);
  }
  for (const issuer of ['http://127.0.0.1:9000/', 'http://127.1.2.3/', 'http://localhost:9000/', 'http://idp.localhost/', 'http://[::1]:9000/', 'https://idp.example.com/']) {
    assert.equal(parseConfig(minimal('', { issuer }), { env: {} }).providers[0]!.issuer, issuer);
  }
});

test('two providers on the same external host are refused, whatever the spelling', () => {
  const second = (external_host: string) =>
    provider('', { name: 'other', client_id: 'other', external_host });
  for (const host of ['https://app.example.com', 'https://APP.example.com:443/', 'http://app.example.com', 'https://app.example.com.', 'https://App.Example.COM.:443']) {
    const issue = only(rejects(`${minimal()}${second(host)}`));
    assert.equal(issue.code, 'config.duplicate_host', host);
    assert.equal(issue.field, 'providers[1].external_host');
    assert.equal(issue.line, 14);
    assert.match(issue.message, /already used by providers\[0\]/);
  }
  // Another port is another host.
  assert.equal(parseConfig(`${minimal()}${second('https://app.example.com:8443')}`, { env: {} }).providers.length, 2);
  const dupName = only(rejects(`${minimal()}${provider('', { client_id: 'other', external_host: 'https://b.example.com' })}`));
  assert.equal(dupName.code, 'config.duplicate_name');
});

test('proxy mode needs internal_host; forward modes do not', () => {
  const issue = only(rejects(minimal('', { internal_host: '' })));
  assert.equal(issue.code, 'config.missing_field');
  assert.equal(issue.field, 'providers[0]');
  assert.equal(issue.line, 2);
  assert.match(issue.message, /internal_host is required in proxy mode/);
  assert.equal(parseConfig(minimal('    mode: forward_single\n', { internal_host: '' }), { env: {} }).providers[0]!.mode, 'forward_single');
  assert.match(only(rejects(minimal('    mode: forward_domain\n', { internal_host: '' }))).message, /forward_domain needs cookie_domain/);
});

test('access_token_validity accepts seconds or authentik\'s "hours=1;minutes=30" form', () => {
  const ttl = (v: string) => parseConfig(minimal(`    access_token_validity: ${v}\n`), { env: {} }).providers[0]!.access_token_validity;
  assert.equal(ttl('"hours=1;minutes=30"'), 5400);
  assert.equal(ttl('"days=1"'), 86400);
  assert.equal(ttl('"weeks=1; days=1; seconds=5;"'), 8 * 86400 + 5);
  assert.equal(ttl('600'), 600);
  // Under a minute too (tests, short-lived tokens): seconds.
  assert.equal(ttl('30'), 30);
  assert.equal(ttl('"seconds=3"'), 3);
  for (const bad of ['0', '"seconds=0"', '"hours=1;fortnights=2"', '"1h"', '-5']) {
    const issue = rejects(minimal(`    access_token_validity: ${bad}\n`)).issues[0]!;
    assert.equal(issue.field, 'providers[0].access_token_validity', bad);
    assert.equal(issue.line, 9, bad);
  }
});

test('trusted_proxies entries must be addresses or CIDRs', () => {
  const err = rejects(`outpost:\n  trusted_proxies: ["10.0.0.0/8", "10.0.0.0/33", "nope", "::1/128", "1.2.3.4/", "fd00::/129", "10.0.0.0/8/8"]\n${minimal()}`);
  assert.deepEqual(
    err.issues.map((i) => [i.code, i.field, i.line]),
    [
      ['config.invalid_cidr', 'outpost.trusted_proxies[1]', 2],
      ['config.invalid_cidr', 'outpost.trusted_proxies[2]', 2],
      ['config.invalid_cidr', 'outpost.trusted_proxies[4]', 2],
      ['config.invalid_cidr', 'outpost.trusted_proxies[5]', 2],
      ['config.invalid_cidr', 'outpost.trusted_proxies[6]', 2],
    ],
  );
  assert.match(err.issues[0]!.message, /"10\.0\.0\.0\/33" is not an IP address or CIDR/);
  const ok = parseConfig(`outpost:\n  trusted_proxies: ["10.0.0.0/8", "::1", "192.168.1.1", "fd00::/8"]\n${minimal()}`, { env: {} });
  assert.deepEqual(ok.outpost.trusted_proxies, ['10.0.0.0/8', '::1', '192.168.1.1', 'fd00::/8']);
});

test('external_host with a path is refused, naming the field and the line', () => {
  for (const external_host of ['https://app.example.com/app', 'https://app.example.com/app/', 'https://app.example.com//']) {
    const issue = only(rejects(minimal('', { external_host })));
    assert.equal(issue.code, 'config.external_host_path', external_host);
    assert.equal(issue.field, 'providers[0].external_host');
    assert.equal(issue.line, 7);
    assert.match(issue.message, /without a path/);
  }
  assert.equal(parseConfig(minimal('', { external_host: 'https://app.example.com/' }), { env: {} }).providers.length, 1);
});

test('external_host must be an http(s) URL without query or fragment', () => {
  assert.equal(only(rejects(minimal('', { external_host: 'ftp://app.example.com' }))).field, 'providers[0].external_host');
  assert.match(only(rejects(minimal('', { external_host: 'https://app.example.com/?x=1' }))).message, /must not have a query or fragment/);
});

test('additional_header_names: tokens without "_"; names claims can never set are refused, naming the entry', () => {
  const ok = parseConfig(minimal('    additional_header_names: [X-Team, x-tenant]\n'), { env: {} });
  assert.deepEqual(ok.providers[0]!.additional_header_names, ['X-Team', 'x-tenant']);
  assert.deepEqual(parseConfig(minimal(), { env: {} }).providers[0]!.additional_header_names, []);
  const underscore = only(rejects(minimal('    additional_header_names: [X_Team]\n')));
  assert.equal(underscore.field, 'providers[0].additional_header_names[0]');
  const framing = only(rejects(minimal('    additional_header_names: [X-Ok, Set-Cookie]\n')));
  assert.equal(framing.code, 'config.invalid_value');
  assert.equal(framing.field, 'providers[0].additional_header_names[1]');
  assert.match(framing.message, /set-cookie cannot be set from claims/);
  assert.match(only(rejects(minimal('    additional_header_names: [Proxy-Foo]\n'))).message, /proxy-\* headers/);
});
