// Reload and shutdown of a real Portcullis process by real signals: SIGHUP with an invalid and a
// valid file while a slow answer is in flight, a watched file, the reload metrics; SIGTERM drains
// (the slow answer completes, the WebSocket ends with 1001) and exits 0; a second signal exits at once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startIdentityProvider, DEMO_USERS, type RunningIdp } from '../../src/demo/identity-provider.js';
import { startUpstream, type RunningUpstream } from '../support/upstream.js';
import { freePort } from '../support/ports.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';
import { startPortcullis, type PortcullisProcess } from '../support/process.js';

const ALICE = { username: 'alice', password: 'alice' };
const dir = mkdtempSync(join(tmpdir(), 'portcullis-signals-'));
let idp: RunningIdp;
let upstream: RunningUpstream;
let port: number;
let metricsPort: number;
const running: PortcullisProcess[] = [];

before(async () => {
  port = await freePort();
  metricsPort = await freePort();
  upstream = await startUpstream();
  idp = await startIdentityProvider({
    clients: [{ client_id: 'app', client_secret: 'app-secret', redirect_uris: [`http://app.localtest:${port}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`] }],
    users: DEMO_USERS,
  });
});
after(async () => {
  for (const p of running) if (p.child.exitCode === null) p.kill('SIGKILL');
  await upstream.close();
  await idp.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(opts: { skip?: string; watch?: boolean; extra?: string } = {}): string {
  return `outpost:
  listeners: { http: "127.0.0.1:${port}", https: null }
  session_store: { type: embedded, path: ${JSON.stringify(join(dir, 'sessions.jsonl'))} }
  metrics: { listen: "127.0.0.1:${metricsPort}" }
  shutdown_timeout: 10
  workers: 1 # one process (test/cli/workers.test.ts covers a primary with workers)
  watch_config: ${opts.watch ?? false}
providers:
  - name: app
    issuer: ${idp.issuer}
    client_id: app
    client_secret: app-secret
    cookie_secret: ${'s'.repeat(32)}
    external_host: http://app.localtest:${port}
    internal_host: ${upstream.url}
    skip_path_regex: ${JSON.stringify(opts.skip ?? '')}
${opts.extra ?? ''}`;
}

const url = (path: string) => `http://app.localtest:${port}${path}`;

async function start(file: string): Promise<PortcullisProcess> {
  const p = startPortcullis(file);
  running.push(p);
  await p.waitFor((l) => l.msg === 'Portcullis is listening');
  return p;
}

async function reloadCounts(): Promise<{ success: number; failure: number }> {
  const text = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body;
  const value = (result: string) => Number(new RegExp(`^portcullis_config_reloads_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { success: value('success'), failure: value('failure') };
}

test('SIGHUP: an invalid file is one log line and changes nothing; a valid one is served to new requests while the slow answer completes', async () => {
  const file = join(dir, 'reload.yaml');
  writeFileSync(file, config());
  const p = await start(file);
  const jar = new CookieJar();
  assert.equal((await loginThrough(url('/'), ALICE, { jar })).final.status, 200);
  assert.equal((await httpGet(url('/public'))).status, 302);
  assert.deepEqual(await reloadCounts(), { success: 0, failure: 0 });

  const slow = httpGet(url('/slow?ms=2500'), { jar });
  await new Promise((r) => setTimeout(r, 300));

  // Invalid: a key that does not exist, and a regex RE2 refuses.
  writeFileSync(file, config({ skip: '(', extra: '    not_a_field: 1\n' }));
  let from = p.lines.length;
  p.kill('SIGHUP');
  const failed = await p.waitFor((l) => l.msg === 'reload failed: the running config keeps serving', { from });
  assert.equal(typeof failed.err, 'string');
  assert.doesNotMatch(failed.err as string, /\n/, 'one line');
  assert.match(failed.err as string, /providers\[0\]/);
  assert.equal((await httpGet(url('/public'))).status, 302, 'the running config still serves');
  assert.equal(p.child.exitCode, null, 'SIGHUP does not end the process');

  // Valid: new requests see it at once.
  writeFileSync(file, config({ skip: '^/public' }));
  from = p.lines.length;
  p.kill('SIGHUP');
  await p.waitFor((l) => l.msg === 'config reloaded', { from });
  assert.equal((await httpGet(url('/public'))).status, 200, 'the new skip_path_regex is in force');
  const me = await httpGet(url('/private'), { jar });
  assert.equal(me.status, 200, 'the session survived the reload');
  assert.equal(JSON.parse(me.body).headers['x-authentik-username'], 'alice');
  const slowAnswer = await slow;
  assert.equal(slowAnswer.status, 200, 'the request in flight across both reloads completed');
  assert.equal(JSON.parse(slowAnswer.body).url, '/slow?ms=2500');
  assert.deepEqual(await reloadCounts(), { success: 1, failure: 1 });

  // outpost.watch_config: a change of the file is enough.
  writeFileSync(file, config({ skip: '^/public', watch: true }));
  p.kill('SIGHUP');
  await p.waitFor((l) => l.msg === 'config reloaded', { from: p.lines.length });
  from = p.lines.length;
  await new Promise((r) => setTimeout(r, 1100)); // a different mtime, for file systems with coarse timestamps
  writeFileSync(file, config({ skip: '^/watched', watch: true }));
  const watched = await p.waitFor((l) => l.msg === 'config reloaded', { from, timeoutMs: 10_000 });
  assert.equal(watched.why, 'file changed');
  assert.equal((await httpGet(url('/watched'))).status, 200);
  assert.equal((await httpGet(url('/public'))).status, 302);
  assert.deepEqual(await reloadCounts(), { success: 3, failure: 1 });

  // SIGTERM: the slow answer completes, the WebSocket is told 1001, the process exits 0.
  const cookie = jar.header(new URL(url('/')))!;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`, { headers: { host: `app.localtest:${port}`, cookie } });
  await new Promise((resolve, reject) => {
    ws.once('message', resolve);
    ws.once('error', reject);
  });
  const wsClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  const draining = httpGet(url('/slow?ms=1500'), { jar });
  await new Promise((r) => setTimeout(r, 300));
  const stopAt = Date.now();
  p.kill('SIGTERM');
  assert.equal(await wsClosed, 1001);
  const drained = await draining;
  assert.equal(drained.status, 200);
  assert.equal(await p.exited, 0);
  assert.ok(Date.now() - stopAt >= 1000, 'the process waited for the answer in flight');
  assert.ok(p.lines.some((l) => l.msg === 'stopped' && l.cut === 0));
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`a second ${signal} exits at once, without waiting for the answer in flight`, async () => {
    const file = join(dir, `second-${signal}.yaml`);
    writeFileSync(file, config({ skip: '^/' }));
    const p = await start(file);
    const slow = httpGet(url('/slow?ms=30000')).then(
      (r) => r.status,
      () => -1,
    );
    await new Promise((r) => setTimeout(r, 300));
    const from = p.lines.length;
    p.kill(signal);
    await p.waitFor((l) => l.msg === 'shutting down: draining requests in flight', { from });
    const at = Date.now();
    p.kill(signal);
    assert.equal(await p.exited, signal === 'SIGINT' ? 130 : 143);
    assert.ok(Date.now() - at < 3000);
    assert.equal(await slow, -1, 'the slow answer was cut');
  });
}
