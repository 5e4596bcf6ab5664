// Redis that fails over: an outpost on a Sentinel-managed master with two replicas (real
// redis-server and redis-sentinel). The master is killed (SIGKILL) while requests run: users
// stay logged in once a replica took over, and a sign-out attempted during the failover either
// answers success and is in effect everywhere afterwards, or answers that it failed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startStack, type Stack } from '../support/stack.js';
import { startRedis, startSentinel, type RunningRedis } from '../support/redis.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';
import type { IdpUser } from '../../src/demo/identity-provider.js';

const APP = 'app.localtest';
const MASTER = 'portcullis-test';
const KEEPER: IdpUser = { username: 'keeper', password: 'keeper', email: 'keeper@example.com' };
const PROBES: IdpUser[] = Array.from({ length: 12 }, (_, i) => ({ username: `probe${i}`, password: `probe${i}`, email: `probe${i}@example.com` }));

let master: RunningRedis;
let replicas: RunningRedis[] = [];
let sentinels: RunningRedis[] = [];
let stack: Stack;

/** A one-shot connection of the test's own (errors are the answer, not events). */
function probe(port: number): Redis {
  const c = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => undefined);
  return c;
}

async function replicationUp(r: RunningRedis): Promise<boolean> {
  const c = probe(r.port);
  try {
    await c.connect();
    return /master_link_status:up/.test(await c.info('replication'));
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

async function masterPortSeenBySentinel(s: RunningRedis): Promise<number | null> {
  const c = probe(s.port);
  try {
    await c.connect();
    const addr = (await c.call('SENTINEL', 'get-master-addr-by-name', MASTER)) as [string, string] | null;
    return addr ? Number(addr[1]) : null;
  } catch {
    return null;
  } finally {
    c.disconnect();
  }
}

async function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  master = await startRedis();
  replicas = [
    await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] }),
    await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] }),
  ];
  for (const r of replicas) await until('replication', () => replicationUp(r), 10_000);
  sentinels = [];
  for (let i = 0; i < 3; i++) sentinels.push(await startSentinel({ masterName: MASTER, masterPort: master.port, quorum: 2, downAfterMs: 1000 }));
  // The sentinels find each other and the replicas through the master (hello messages).
  await until('sentinels to know the replicas', async () => {
    const c = probe(sentinels[0]!.port);
    try {
      await c.connect();
      const known = (await c.call('SENTINEL', 'replicas', MASTER)) as unknown[];
      const peers = (await c.call('SENTINEL', 'sentinels', MASTER)) as unknown[];
      return known.length === 2 && peers.length === 2;
    } finally {
      c.disconnect();
    }
  }, 15_000);
  stack = await startStack({
    providers: [{ name: 'app', host: APP }],
    users: [KEEPER, ...PROBES],
    outpost: {
      session_store: {
        type: 'redis',
        sentinel: { master_name: MASTER, nodes: sentinels.map((s) => `127.0.0.1:${s.port}`) },
        key_prefix: 'ha:',
      },
    },
  });
});

after(async () => {
  await stack?.close();
  for (const r of [...sentinels, ...replicas, master]) await r?.stop();
});

function ask(path: string, cookie: string): Promise<HttpResult> {
  return httpGet(stack.url(APP, path), { headers: { cookie } });
}

async function login(user: IdpUser): Promise<string> {
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(APP, '/'), user, { jar });
  assert.equal(final.status, 200, `login of ${user.username}: ${final.status} ${final.body.slice(0, 200)}`);
  return jar.header(new URL(stack.url(APP, '/')))!;
}

function username(res: HttpResult): string | undefined {
  return res.status === 200 ? (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-authentik-username'] : undefined;
}

const isLoginRedirect = (res: HttpResult) => res.status === 302 && String(res.headers.location).includes('/outpost.goauthentik.io/start?rd=');

test('the master is killed under load: users stay logged in after the failover; no sign-out answers success without effect', async (t) => {
  const keeper = await login(KEEPER);
  const probes = new Map<string, string>();
  for (const p of PROBES) probes.set(p.username, await login(p));
  assert.equal(username(await ask('/warm', keeper)), 'keeper');

  // Load: the keeper's requests, continuously, on four concurrent loops.
  const seen: { status: number; user?: string; at: number }[] = [];
  let loading = true;
  const loops = Array.from({ length: 4 }, async () => {
    while (loading) {
      const res = await ask('/load', keeper);
      seen.push({ status: res.status, user: username(res), at: Date.now() });
    }
  });

  await new Promise((r) => setTimeout(r, 300));
  const killedAt = Date.now();
  await master.kill();

  // Sign-outs all through the failover, one probe user every 250 ms.
  const signOuts: { user: string; status: number; at: number }[] = [];
  let failedOver = false;
  const watcher = (async () => {
    await until('the sentinels to promote a replica', async () => {
      const port = await masterPortSeenBySentinel(sentinels[0]!);
      return port !== null && port !== master.port;
    }, 30_000);
    failedOver = true;
  })();
  for (const [user, cookie] of probes) {
    const res = await ask('/outpost.goauthentik.io/sign_out', cookie);
    signOuts.push({ user, status: res.status, at: Date.now() });
    if (failedOver && signOuts.filter((s) => s.at > killedAt).length >= 6) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  await watcher;
  // Requests work again on the new master.
  await until('the keeper to be served again', async () => username(await ask('/after', keeper)) === 'keeper', 15_000);
  loading = false;
  await Promise.all(loops);

  // Users stay logged in: the keeper was never sent to login, never served as someone else,
  // and was refused only with a 503 while no master answered.
  assert.ok(seen.length > 20, `load ran (${seen.length} requests)`);
  for (const r of seen) {
    assert.ok(r.status === 200 || r.status === 503, `keeper got ${r.status} at +${r.at - killedAt} ms`);
    if (r.status === 200) assert.equal(r.user, 'keeper');
  }
  assert.ok(seen.filter((r) => r.at > killedAt).length > 4, 'requests ran during the failover');
  for (let i = 0; i < 5; i++) assert.equal(username(await ask(`/after-${i}`, keeper)), 'keeper', 'still logged in after the failover');

  t.diagnostic(
    `keeper: ${seen.length} requests, ${seen.filter((r) => r.status === 503).length} answered 503 during the failover; ` +
      `sign-outs after the kill: ${signOuts.filter((s) => s.at > killedAt).map((s) => `+${s.at - killedAt}ms:${s.status}`).join(' ')}`,
  );
  // Every sign-out answered success is in effect on the new master; every other one said it failed.
  for (const s of signOuts) assert.ok(s.status === 302 || s.status === 503, `sign-out of ${s.user}: ${s.status}`);
  assert.ok(signOuts.some((s) => s.at > killedAt && s.status === 503), 'some sign-outs met the failover (and said they failed)');
  for (const s of signOuts.filter((x) => x.status === 302)) {
    for (let i = 0; i < 3; i++) assert.ok(isLoginRedirect(await ask(`/check-${i}`, probes.get(s.user)!)), `${s.user}'s sign-out answered success: the session is gone`);
  }
  // A sign-out that failed can be repeated once the new master answers, and then takes effect.
  for (const s of signOuts.filter((x) => x.status === 503)) {
    const again = await ask('/outpost.goauthentik.io/sign_out', probes.get(s.user)!);
    if (again.status === 302) assert.ok(isLoginRedirect(await ask('/retry', probes.get(s.user)!)));
    else assert.ok(isLoginRedirect(again) || again.status === 200, `retried sign-out of ${s.user}: ${again.status}`);
  }
  // A login after the failover works and is replicated to the remaining replica (wait_replicas 1).
  const fresh = await login(PROBES[0]!);
  assert.equal(username(await ask('/fresh', fresh)), 'probe0');
});
