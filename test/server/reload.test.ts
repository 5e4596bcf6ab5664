// Reload without dropping anything: a new config is served to new requests while a slow answer
// and an open WebSocket, begun before the reload, finish on the old one; sessions survive;
// providers are changed, removed and added; a config that cannot be served changes nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parse, stringify } from 'yaml';
import WebSocket from 'ws';
import { parseConfig, ConfigError, type PortcullisConfig } from '../../src/config/index.js';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';

const ALICE = { username: 'alice', password: 'alice' };
let stack: Stack;
let base: { outpost: Record<string, unknown>; providers: Record<string, unknown>[] };

before(async () => {
  stack = await startStack({ providers: [{ name: 'app', host: 'app.localtest' }, { name: 'other', host: 'other.localtest' }] });
  base = parse(stack.configYaml) as typeof base;
});
after(async () => {
  await stack.close();
});

/** The stack's config with changes: `app` fields merged, providers kept by name. */
function variant(opts: { app?: Record<string, unknown>; keep?: string[]; outpost?: Record<string, unknown> }): PortcullisConfig {
  const doc = structuredClone(base);
  doc.outpost = { ...doc.outpost, ...opts.outpost };
  doc.providers = doc.providers
    .filter((p) => (opts.keep ?? ['app', 'other']).includes(p.name as string))
    .map((p) => (p.name === 'app' ? { ...p, ...opts.app } : p));
  return parseConfig(stringify(doc), { source: 'reloaded config', baseDir: process.cwd() });
}

async function login(host: string): Promise<CookieJar> {
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(host, '/'), ALICE, { jar });
  assert.equal(final.status, 200, `logged in on ${host}`);
  return jar;
}

function openSocket(jar: CookieJar): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${stack.port}/socket`, { headers: { host: `app.localtest:${stack.port}`, cookie: jar.header(new URL(stack.url('app.localtest'))) } });
  return new Promise((resolve, reject) => {
    ws.once('message', () => resolve(ws)); // the upstream's hello
    ws.once('error', reject);
  });
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    ws.once('message', (d) => resolve(String(d)));
    ws.once('close', (code) => reject(new Error(`closed with ${code}`)));
    ws.send(text);
  });
}

test('a reload serves the new config to new requests; a slow answer and a WebSocket begun before it finish on the old one', async () => {
  const jar = await login('app.localtest');
  // Before: /public needs a login; other.localtest is served.
  assert.equal((await httpGet(stack.url('app.localtest', '/public'))).status, 302);
  assert.equal((await httpGet(stack.url('other.localtest', '/'))).status, 302);

  const slow = httpGet(stack.url('app.localtest', '/slow?ms=1500'), { jar });
  const ws = await openSocket(jar);
  await new Promise((r) => setTimeout(r, 200)); // the slow request has reached the upstream
  const seenBefore = stack.upstream.requests.length;

  await stack.outpost.reload(variant({ app: { skip_path_regex: '^/public' }, keep: ['app'] }));

  // New requests: the changed provider, the removed one.
  const anonymous = await httpGet(stack.url('app.localtest', '/public'));
  assert.equal(anonymous.status, 200, 'the new skip_path_regex is in force');
  const removed = await httpGet(stack.url('other.localtest', '/'));
  assert.equal(removed.status, 400, 'the removed provider is no longer served');
  assert.match(removed.body, /no provider whose external_host is/);
  // The session made before the reload is still valid.
  const signedIn = await httpGet(stack.url('app.localtest', '/private'), { jar });
  assert.equal(signedIn.status, 200);
  assert.equal(JSON.parse(signedIn.body).headers['x-authentik-username'], 'alice');

  // The request in flight completes, with the answer the upstream gave it.
  const slowAnswer = await slow;
  assert.equal(slowAnswer.status, 200);
  assert.equal(JSON.parse(slowAnswer.body).url, '/slow?ms=1500');
  assert.ok(stack.upstream.requests.length > seenBefore);
  // The WebSocket opened before the reload still carries messages both ways.
  assert.equal(await echo(ws, 'still here after the reload'), 'still here after the reload');
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.close(1000);
  assert.equal(await closed, 1000);
});

test('a config that cannot be built or needs a restart is refused, and the running one keeps serving', async () => {
  await stack.outpost.reload(variant({ app: { skip_path_regex: '^/public' }, keep: ['app'] }));
  const running = stack.outpost.config;
  // An invalid stage option is caught only when the chain is built (after the file validated).
  const badPipeline = parse(stack.configYaml) as Record<string, unknown>;
  badPipeline.pipeline = [{ stage: 'auth' }, { stage: 'allowlist', options: { nope: 1 } }, { stage: 'headers' }, { stage: 'upstream' }];
  await assert.rejects(stack.outpost.reload(parseConfig(stringify(badPipeline), { source: 'bad pipeline' })), (err: Error) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /pipeline\[1\]\.options/);
    return true;
  });
  await assert.rejects(stack.outpost.reload(variant({ outpost: { listeners: { http: '127.0.0.1:1', https: null } } })), (err: Error) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /outpost\.listeners\.http: cannot change while running; restart Portcullis to apply it \[config\.restart_required\]/);
    return true;
  });
  await assert.rejects(stack.outpost.reload(variant({ outpost: { session_store: { type: 'embedded', path: '/tmp/elsewhere.jsonl' } } })), /outpost\.session_store/);
  assert.equal(stack.outpost.config, running, 'the running config is unchanged');
  assert.equal((await httpGet(stack.url('app.localtest', '/public'))).status, 200);
  assert.equal((await httpGet(stack.url('other.localtest', '/'))).status, 400);
});

test('a provider added by a reload logs users in and keeps their sessions across the next reload', async () => {
  await stack.outpost.reload(variant({ keep: ['app'] }));
  assert.equal((await httpGet(stack.url('other.localtest', '/'))).status, 400);
  await stack.outpost.reload(variant({}));
  const jar = await login('other.localtest');
  // Changing another provider leaves this one's sessions alone.
  await stack.outpost.reload(variant({ app: { skip_path_regex: '^/elsewhere' } }));
  const res = await httpGet(stack.url('other.localtest', '/after'), { jar });
  assert.equal(res.status, 200);
  assert.equal(JSON.parse(res.body).headers['x-authentik-username'], 'alice');
});

test('readiness stays ready across a reload that keeps the providers\' OpenID settings', async () => {
  const ready = await httpGet(stack.url('app.localtest', '/outpost.goauthentik.io/ready'));
  assert.equal(ready.status, 204);
  await stack.outpost.reload(variant({ app: { skip_path_regex: '^/again' } }));
  assert.deepEqual(stack.outpost.notReady(), [], 'no new discovery was needed');
  assert.equal((await httpGet(stack.url('app.localtest', '/outpost.goauthentik.io/ready'))).status, 204);
});
