// outpost.workers: several processes behind one listener (node:cluster), sharing sessions in a
// real Redis or in the embedded SQLite file. A login through one worker is valid on all; a session signed out through one is
// refused by every worker from the moment the sign-out answered, over many fresh connections.
// Metrics are aggregated on the one metrics listener; SIGHUP reloads every worker; a killed worker
// is replaced; SIGTERM drains them all and the process exits 0.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startIdentityProvider, DEMO_USERS, type RunningIdp } from '../../src/demo/identity-provider.js';
import { startUpstream, type RunningUpstream } from '../support/upstream.js';
import { freePort } from '../support/ports.js';
import { startRedis, type RunningRedis } from '../support/redis.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';
import { startPortcullis, type PortcullisProcess, type LogLine } from '../support/process.js';

/** The stores several processes can share. */
const STORES = ['redis', 'embedded'] as const;

// One Portcullis (a primary and its workers) per store; the body is not indented to keep the YAML templates flush.
for (const storeKind of STORES) describe(`workers sharing the ${storeKind} store`, () => {
const ALICE = { username: 'alice', password: 'alice' };
const WORKERS = 2;
const dir = mkdtempSync(join(tmpdir(), 'portcullis-workers-'));
let idp: RunningIdp;
let upstream: RunningUpstream;
let redis: RunningRedis | undefined;
let port: number;
let metricsPort: number;
let p: PortcullisProcess;
const file = join(dir, 'portcullis.yaml');

/** The session store the workers share (a YAML flow map). */
const STORE = () => (storeKind === 'redis' ? `{ type: redis, url: "${redis!.url}" }` : `{ type: embedded, path: ${JSON.stringify(join(dir, 'sessions.db'))} }`);

function config(skip = ''): string {
  return `outpost:
  listeners: { http: "127.0.0.1:${port}", https: null }
  session_store: ${STORE()}
  metrics: { listen: "127.0.0.1:${metricsPort}" }
  workers: ${WORKERS}
  shutdown_timeout: 10
providers:
  - name: app
    issuer: ${idp.issuer}
    client_id: app
    client_secret: app-secret
    cookie_secret: ${'w'.repeat(32)}
    external_host: http://app.localtest:${port}
    internal_host: ${upstream.url}
    skip_path_regex: ${JSON.stringify(skip)}
`;
}

before(async () => {
  port = await freePort();
  metricsPort = await freePort();
  if (storeKind === 'redis') redis = await startRedis();
  upstream = await startUpstream();
  idp = await startIdentityProvider({
    clients: [{ client_id: 'app', client_secret: 'app-secret', redirect_uris: [`http://app.localtest:${port}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`] }],
    users: DEMO_USERS,
  });
  writeFileSync(file, config());
  p = startPortcullis(file);
  const listening = await p.waitFor((l) => l.msg === 'Portcullis is listening');
  assert.equal(listening.workers, WORKERS);
  assert.equal(listening.worker, 0, 'the primary says it is the primary');
});
after(async () => {
  if (p.child.exitCode === null) p.kill('SIGKILL');
  await upstream.close();
  await idp.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const url = (path: string) => `http://app.localtest:${port}${path}`;

/** `n` requests, each on a fresh connection (the primary deals connections out to the workers). */
async function fresh(n: number, path: (i: number) => string, cookie?: string) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await httpGet(url(path(i)), { headers: cookie ? { cookie } : {} }));
  return out;
}

/** The workers whose request log lines have a path starting with `prefix`. */
async function workersThatServed(prefix: string, count: number): Promise<Set<unknown>> {
  const lines = () => p.lines.filter((l: LogLine) => l.msg === 'request' && typeof l.path === 'string' && l.path.startsWith(prefix));
  // Log lines are written after the answer: wait until all are in.
  for (let i = 0; i < 100 && lines().length < count; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(lines().length, count, `a log line per request under ${prefix}`);
  return new Set(lines().map((l) => l.worker));
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body;
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '').includes(labels)) {
      sum += Number(m[3]);
      found = true;
    }
  }
  assert.ok(found, `${name}${labels} is exposed`);
  return sum;
}

test('a login through one worker is valid on all; a sign-out through one is refused by every worker at once', async () => {
  const jar = new CookieJar();
  assert.equal((await loginThrough(url('/'), ALICE, { jar })).final.status, 200);
  const cookie = jar.header(new URL(url('/')))!;
  const signedIn = await fresh(30, (i) => `/in/${i}`, cookie);
  for (const res of signedIn) {
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).headers['x-authentik-username'], 'alice');
  }
  assert.equal((await workersThatServed('/in/', 30)).size, WORKERS, 'every worker served the session');

  const signOut = await httpGet(url('/outpost.goauthentik.io/sign_out'), { jar });
  assert.equal(signOut.status, 302);
  // From the moment the sign-out answered: the old cookie, on fresh connections, to every worker.
  const after = await fresh(40, (i) => `/out/${i}`, cookie);
  for (const res of after) {
    assert.equal(res.status, 302, 'a signed-out session is refused');
    assert.match(String(res.headers.location), /\/authorize\?|outpost\.goauthentik\.io\/start/);
  }
  assert.equal((await workersThatServed('/out/', 40)).size, WORKERS, 'every worker refused it');
  assert.equal(upstream.requests.filter((r) => r.url.startsWith('/out/')).length, 0, 'nothing reached the upstream');

  // The one metrics listener counts every worker's requests.
  const served = p.lines.filter((l) => l.msg === 'request' && l.provider === 'app' && l.entry === 'proxy').length;
  assert.equal(await metric('portcullis_requests_total', 'provider="app",entry="proxy"'), served);
  assert.equal(await metric('portcullis_worker_restarts_total'), 0);
});

test('SIGHUP reloads every worker; a killed worker is replaced; SIGTERM drains every worker and exits 0', async () => {
  assert.equal((await httpGet(url('/public/x'))).status, 302);
  writeFileSync(file, config('^/public/'));
  let from = p.lines.length;
  p.kill('SIGHUP');
  const reloaded = await p.waitFor((l) => l.msg === 'config reloaded', { from });
  assert.equal(reloaded.workers, WORKERS);
  const anonymous = await fresh(20, (i) => `/public/${i}`);
  for (const res of anonymous) assert.equal(res.status, 200, 'every worker serves the new config');
  assert.equal((await workersThatServed('/public/', 21)).size, WORKERS);
  assert.equal(await metric('portcullis_config_reloads_total', 'result="success"'), 1);

  // A worker dies: the primary starts another; requests keep being answered.
  const ready = p.lines.filter((l) => l.msg === 'worker ready');
  const victim = ready[0]!;
  from = p.lines.length;
  process.kill(victim.pid as number, 'SIGKILL');
  await p.waitFor((l) => l.msg === 'worker exited; starting a replacement' && l.exited === victim.worker, { from });
  const replaced = await p.waitFor((l) => l.msg === 'replacement worker ready', { from });
  assert.equal(replaced.replaced, victim.worker);
  for (const res of await fresh(10, (i) => `/public/again/${i}`)) assert.equal(res.status, 200, 'the replacement serves the current config');
  assert.equal(await metric('portcullis_worker_restarts_total'), 1);

  // Slow answers in flight on several connections (so on both workers), then SIGTERM.
  const slow = Array.from({ length: 4 }, (_, i) => httpGet(url(`/public/slow?ms=1500&i=${i}`)).then((r) => r.status));
  await new Promise((r) => setTimeout(r, 400));
  p.kill('SIGTERM');
  assert.deepEqual(await Promise.all(slow), [200, 200, 200, 200]);
  assert.equal(await p.exited, 0);
  assert.ok(p.lines.some((l) => l.msg === 'stopped' && l.worker === 0 && l.cut === 0));
});
});
