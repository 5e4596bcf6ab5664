// Prometheus metrics: the separate /metrics listener, what is counted and with which labels,
// the login observer, the sessions gauge, and the configuration of `outpost.metrics`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, freePort, quietLogger, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';
import { parseConfig, ConfigError } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { OutpostMetrics } from '../../src/server/metrics.js';
import type { ProviderRegistry } from '../../src/config/provider.js';
import type { SessionStore } from '../../src/sessions/store.js';
import type { Logger } from '../../src/pipeline/logger.js';

const ALICE = { username: 'alice', password: 'alice' };
const APP = 'app.localtest';
const FWD = 'fwd.localtest';
let stack: Stack;
let metricsPort: number;
const dir = mkdtempSync(join(tmpdir(), 'portcullis-metrics-'));

before(async () => {
  metricsPort = await freePort();
  stack = await startStack({
    outpost: { metrics: { listen: `127.0.0.1:${metricsPort}` } },
    providers: [
      { name: 'app', host: APP, extra: { skip_path_regex: '^/public/' } },
      { name: 'fwd', host: FWD, mode: 'forward_single' },
    ],
  });
});
after(async () => {
  await stack.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the text exposition format (enough of it for these tests). */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of m[2]?.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g) ?? []) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(port = metricsPort): Promise<Sample[]> {
  const res = await httpGet(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parseMetrics(res.body);
}

/** The value of one series (0 when absent), matching every given label exactly. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.keys(labels).length === Object.keys(s.labels).filter((k) => k !== 'le').length && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `several series for ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

const requests = (s: Sample[], provider: string, entry: string, status_class: string) => value(s, 'portcullis_requests_total', { provider, entry, status_class });

test('requests are counted by provider, entry and status class; logins, sign-outs and sessions too', async () => {
  const s0 = await scrape();
  for (const provider of ['app', 'fwd']) {
    for (const result of ['success', 'failure']) {
      assert.ok(s0.some((s) => s.name === 'portcullis_logins_total' && s.labels.provider === provider && s.labels.result === result && s.value === 0), 'series exist from the start');
    }
    assert.ok(s0.some((s) => s.name === 'portcullis_sign_outs_total' && s.labels.provider === provider && s.value === 0));
  }

  // A 302 challenge on a private path (with a query string that must never become a label).
  const challenge = await httpGet(stack.url(APP, '/private/path-secret?token=q1'));
  assert.equal(challenge.status, 302);
  // Login: challenge, start, callback (each a 302), then the upstream's 200.
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(APP, '/landing?x=1'), ALICE, { jar });
  assert.equal(final.status, 200);
  // Proxied 200s with the session, an allowlisted 200 without one.
  for (let i = 0; i < 3; i++) assert.equal((await httpGet(stack.url(APP, `/item/${i}`), { jar })).status, 200);
  assert.equal((await httpGet(stack.url(APP, '/public/style.css'))).status, 200);
  // An unknown host, the ping endpoint, a forward-auth decision (401).
  assert.equal((await httpGet(`http://nowhere.localtest:${stack.port}/secret-path`)).status, 400);
  assert.equal((await httpGet(stack.url(APP, '/outpost.goauthentik.io/ping'))).status, 204);
  const nginx = await httpGet(stack.url(FWD, '/outpost.goauthentik.io/auth/nginx'), { headers: { 'x-original-url': `http://${FWD}:${stack.port}/doc` } });
  assert.equal(nginx.status, 401);

  const s1 = await scrape();
  const d = (provider: string, entry: string, cls: string) => requests(s1, provider, entry, cls) - requests(s0, provider, entry, cls);
  assert.equal(d('app', 'proxy', '3xx'), 4, 'the 302 challenge + the login (challenge, start, callback)');
  assert.equal(d('app', 'proxy', '2xx'), 5, 'landing page, 3 proxied, 1 allowlisted');
  assert.equal(d('', '', '4xx'), 1, 'the unknown host: no provider, no entry');
  assert.equal(d('', 'ping', '2xx'), 1);
  assert.equal(d('fwd', 'nginx', '4xx'), 1);
  assert.equal(value(s1, 'portcullis_logins_total', { provider: 'app', result: 'success' }), 1);
  assert.equal(value(s1, 'portcullis_logins_total', { provider: 'app', result: 'failure' }), 0);
  assert.equal(value(s1, 'portcullis_sessions'), await stack.outpost.store.size());
  assert.equal(value(s1, 'portcullis_sessions'), 1);

  // Histograms have observations, with the same bounded labels.
  assert.equal(
    value(s1, 'portcullis_request_duration_seconds_count', { provider: 'app', entry: 'proxy' }) - value(s0, 'portcullis_request_duration_seconds_count', { provider: 'app', entry: 'proxy' }),
    9,
  );
  assert.ok(value(s1, 'portcullis_request_duration_seconds_sum', { provider: 'app', entry: 'proxy' }) > 0);
  assert.ok(s1.some((s) => s.name === 'portcullis_request_duration_seconds_bucket' && s.labels.le === '0.0005'), 'a 0.5 ms bucket');
  assert.ok(s1.some((s) => s.name === 'portcullis_request_duration_seconds_bucket' && s.labels.le === '10'), 'a 10 s bucket');
  // authentik's metric: the provider's external host, never the request's Host.
  const ak = (host: string, type: string) => value(s1, 'authentik_outpost_proxy_request_duration_seconds_count', { outpost_name: 'test outpost', method: 'GET', host, type });
  assert.equal(ak(`${APP}:${stack.port}`, 'app'), 9);
  assert.equal(ak(`${FWD}:${stack.port}`, 'app'), 1);
  assert.equal(ak(`${APP}:${stack.port}`, 'ping'), 1);
  // Node's process metrics are on the same registry.
  assert.ok(s1.some((s) => s.name === 'process_cpu_user_seconds_total'));
  assert.ok(s1.some((s) => s.name === 'nodejs_heap_size_used_bytes'));

  // No label value holds a path, a query, an unknown host or a user name.
  for (const s of s1) {
    for (const [k, v] of Object.entries(s.labels)) {
      assert.doesNotMatch(v, /\/|\?|alice|secret|token|nowhere|landing|item|public/i, `${s.name} ${k}="${v}"`);
    }
  }
  const allowed: Record<string, RegExp> = {
    provider: /^(app|fwd|)$/,
    entry: /^(proxy|nginx|traefik|caddy|envoy|ping|)$/,
    status_class: /^[1-5]xx$/,
    result: /^(success|failure)$/,
  };
  for (const s of s1.filter((x) => x.name.startsWith('portcullis_'))) {
    for (const [k, v] of Object.entries(s.labels)) if (allowed[k]) assert.match(v, allowed[k]!, `${s.name} ${k}="${v}"`);
  }

  // A refused callback is a failed login; a sign-out counts and ends the session.
  const bad = await httpGet(stack.url(APP, '/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&state=forged&code=x'));
  assert.equal(bad.status, 400);
  const out = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'), { jar });
  assert.equal(out.status, 302);
  // Signing out again (no session any more) is not a sign-out.
  assert.equal((await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'), { jar })).status, 200);
  const s2 = await scrape();
  assert.equal(value(s2, 'portcullis_logins_total', { provider: 'app', result: 'failure' }), 1);
  assert.equal(value(s2, 'portcullis_logins_total', { provider: 'app', result: 'success' }), 1);
  assert.equal(value(s2, 'portcullis_sign_outs_total', { provider: 'app' }), 1);
  assert.equal(value(s2, 'portcullis_sign_outs_total', { provider: 'fwd' }), 0);
  assert.equal(value(s2, 'portcullis_sessions'), await stack.outpost.store.size());
  assert.equal(value(s2, 'portcullis_sessions'), 0);
});

test('the metrics listener answers only GET/HEAD /metrics', async () => {
  const base = `http://127.0.0.1:${metricsPort}`;
  assert.equal((await httpGet(`${base}/`)).status, 404);
  assert.equal((await httpGet(`${base}/metrics/x`)).status, 404);
  assert.equal((await httpGet(`${base}/metrics`, { method: 'POST', body: '' })).status, 404);
  const withQuery = await httpGet(`${base}/metrics?x=1`);
  assert.equal(withQuery.status, 200);
  const head = await httpGet(`${base}/metrics`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  // The outpost's own listener does not serve metrics.
  assert.notEqual((await httpGet(stack.url(APP, '/metrics'))).body.includes('portcullis_requests_total'), true);
});

test('two outposts in one process have separate registries; without metrics no listener is started', async () => {
  const config = (metrics: string | null) =>
    parseConfig(
      [
        'outpost:',
        '  listeners: { http: "127.0.0.1:0", https: null }',
        `  session_store: { type: embedded, path: ${JSON.stringify(join(dir, `sessions-${metrics === null ? 'off' : 'on'}.db`))} }`,
        '  log_level: silent',
        `  metrics: { listen: ${metrics === null ? 'null' : JSON.stringify(metrics)} }`,
        'providers:',
        '  - name: other',
        '    issuer: http://127.0.0.1:9/',
        '    client_id: other',
        '    client_secret: other',
        '    cookie_secret: 0123456789abcdef0123456789abcdef',
        '    external_host: http://other.localtest',
        '    internal_host: http://127.0.0.1:9',
      ].join('\n'),
      { baseDir: dir },
    );

  const on = await Outpost.create(config('127.0.0.1:0'), { logger: quietLogger() });
  try {
    const addresses = await on.listen();
    assert.ok(addresses.metrics && addresses.metrics.port > 0, 'the metrics listener is started');
    assert.ok(on.metrics);
    assert.notEqual(on.metrics.registry, stack.outpost.metrics!.registry);
    const own = parseMetrics(await on.metrics.metrics());
    assert.equal(value(own, 'portcullis_logins_total', { provider: 'app', result: 'success' }), 0, "the other outpost's counts are not here");
    assert.equal(value(own, 'portcullis_logins_total', { provider: 'other', result: 'success' }), 0);
    assert.ok(own.some((s) => s.name === 'portcullis_logins_total' && s.labels.provider === 'other'));
    assert.equal((await scrape(addresses.metrics.port)).length > 0, true);
  } finally {
    await on.close();
  }

  const off = await Outpost.create(config(null), { logger: quietLogger() });
  try {
    assert.equal(off.config.outpost.metrics.listen, null);
    assert.equal(off.metrics, null);
    const addresses = await off.listen();
    assert.ok(addresses.http);
    assert.equal(addresses.metrics, undefined, 'no metrics listener');
    // And the outpost works without them.
    const ping = await httpGet(`http://127.0.0.1:${addresses.http.port}/outpost.goauthentik.io/ping`);
    assert.equal(ping.status, 204);
  } finally {
    await off.close();
  }
});

test('the sessions gauge is collected at scrape time, from a store that answers asynchronously', async () => {
  let size: number | Error = 7;
  const store = { size: async () => (size instanceof Error ? Promise.reject(size) : size) } as unknown as SessionStore;
  const providers = { all: [], forHost: () => undefined } as unknown as ProviderRegistry;
  const warnings: unknown[] = [];
  const log = { info() {}, debug() {}, error() {}, warn: (o: unknown) => warnings.push(o), child: () => log } as unknown as Logger;
  const metrics = new OutpostMetrics({ outpostName: 'x', providers, store, log });
  assert.equal(value(parseMetrics(await metrics.metrics()), 'portcullis_sessions'), 7);
  size = 3;
  assert.equal(value(parseMetrics(await metrics.metrics()), 'portcullis_sessions'), 3);
  // A store that cannot answer (Redis down) keeps the last value, and the scrape still works.
  size = new Error('redis down');
  assert.equal(value(parseMetrics(await metrics.metrics()), 'portcullis_sessions'), 3);
  assert.equal(warnings.length, 1);
});

test('outpost.metrics: default off; an invalid listen value is a config error naming the field', () => {
  const base = [
    'providers:',
    '  - name: demo',
    '    issuer: https://idp.example.com/application/o/demo/',
    '    client_id: demo',
    '    client_secret: secret',
    '    cookie_secret: 0123456789abcdef0123456789abcdef',
    '    external_host: https://app.example.com',
    '    internal_host: http://127.0.0.1:8080',
  ].join('\n');
  assert.equal(parseConfig(base, { env: {}, baseDir: dir }).outpost.metrics.listen, null);
  assert.equal(parseConfig(`outpost:\n  name: x\n${base}`, { env: {}, baseDir: dir }).outpost.metrics.listen, null);
  assert.equal(parseConfig(`outpost:\n  metrics: {}\n${base}`, { env: {}, baseDir: dir }).outpost.metrics.listen, null);
  assert.equal(parseConfig(`outpost:\n  metrics: { listen: "[::1]:9300" }\n${base}`, { env: {}, baseDir: dir }).outpost.metrics.listen, '[::1]:9300');

  const rejected = (text: string): ConfigError => {
    try {
      parseConfig(text, { env: {}, baseDir: dir, source: 'test.yaml' });
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err;
    }
    assert.fail('expected a ConfigError');
  };
  for (const bad of ['"9300"', '"localhost"', '"0.0.0.0:port"', '9300', 'true']) {
    const err = rejected(`outpost:\n  metrics:\n    listen: ${bad}\n${base}`);
    assert.ok(err.issues.length > 0);
    for (const issue of err.issues) {
      assert.equal(issue.field, 'outpost.metrics.listen', err.message);
      assert.equal(issue.line, 3);
    }
  }
  const unknown = rejected(`outpost:\n  metrics: { listen: null, port: 9300 }\n${base}`);
  assert.deepEqual(
    unknown.issues.map((i) => [i.field, i.code]),
    [['outpost.metrics.port', 'config.unknown_field']],
  );
});
