// The Redis store on a real three-master Redis Cluster on loopback (redis-server in cluster mode,
// created with redis-cli --cluster create): sessions spread over the masters' slots, and every
// operation — login, lookup, cap, sign-out, count, header names — works across them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { RedisSessionStore } from '../../src/sessions/redis-store.js';
import type { SessionRecord } from '../../src/sessions/store.js';
import type { Logger } from '../../src/pipeline/logger.js';
import { startRedis, type RunningRedis } from '../support/redis.js';

const log = pino({ level: 'silent' }) as unknown as Logger;
const keys = new Map([['app', randomBytes(32)]]);
let nodes: RunningRedis[] = [];

function record(id: string, user: string, createdAt: number): SessionRecord {
  return { id, provider: 'app', userKey: `iss\u0000${user}`, createdAt, expiresAt: Date.now() + 60_000, claims: { sub: user }, idToken: 'h.p.s' };
}

async function clusterOk(port: number): Promise<boolean> {
  const c = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return /cluster_state:ok/.test((await c.call('CLUSTER', 'INFO')) as string);
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

before(async () => {
  for (let i = 0; i < 3; i++) {
    nodes.push(await startRedis({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'] }));
  }
  const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(create.status, 0, `redis-cli --cluster create: ${create.stdout}${create.stderr}`);
  const deadline = Date.now() + 20_000;
  for (const n of nodes) {
    while (!(await clusterOk(n.port))) {
      if (Date.now() > deadline) throw new Error('the cluster did not reach cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});

after(async () => {
  for (const n of nodes) await n.stop();
  nodes = [];
});

test('a Redis Cluster: sessions over every master; lookup, cap, sign-out, size and header names work across slots', async () => {
  const store = new RedisSessionStore({ cluster: { nodes: [`127.0.0.1:${nodes[0]!.port}`] }, keys, log, keyPrefix: 'c:', maxSessionsPerUser: 3 });
  await store.open();
  try {
    const t0 = Date.now();
    const users = Array.from({ length: 8 }, (_, i) => `user${i}`);
    for (const u of users) for (let k = 0; k < 5; k++) await store.put(record(`${u}-s${k}`, u, t0 + k));
    // The cap (3): each user's two oldest sessions went, wherever their keys live.
    for (const u of users) {
      assert.equal(await store.get(`${u}-s0`), undefined);
      assert.equal(await store.get(`${u}-s1`), undefined);
      for (const k of [2, 3, 4]) assert.equal((await store.get(`${u}-s${k}`))?.claims.sub, u);
    }
    assert.equal(await store.size(), users.length * 3, 'size() counts the keys of every master');
    // The keys really are spread over the masters.
    for (const n of nodes) {
      const c = new Redis(n.port, '127.0.0.1', { lazyConnect: true });
      await c.connect();
      const own = (await c.dbsize()) as number;
      c.disconnect();
      assert.ok(own > 0, `master on ${n.port} holds keys`);
    }
    // Sign-out ends every session of the user (keys in different slots), and no other user's.
    assert.equal(await store.deleteUser('iss\u0000user0'), 3);
    for (const k of [2, 3, 4]) assert.equal(await store.get(`user0-s${k}`), undefined);
    assert.ok(await store.get('user1-s4'));
    await store.delete('user1-s4');
    assert.equal(await store.get('user1-s4'), undefined);
    assert.equal(await store.size(), users.length * 3 - 4);
    await store.recordHeaderNames(['x-team']);
    const other = new RedisSessionStore({ cluster: { nodes: [`127.0.0.1:${nodes[2]!.port}`] }, keys, log, keyPrefix: 'c:' });
    await other.open();
    assert.ok(other.headerNames().has('x-team'));
    assert.equal((await other.get('user2-s3'))?.claims.sub, 'user2', 'another replica, entering the cluster through another node');
    await other.close();
  } finally {
    await store.close();
  }
});

test('a Redis Cluster: logout by sid and by user at a provider, replay records and refresh locks work across slots', async () => {
  const two = new Map([...keys, ['other', randomBytes(32)]]);
  const a = new RedisSessionStore({ cluster: { nodes: [`127.0.0.1:${nodes[0]!.port}`] }, keys: two, log, keyPrefix: 'l:' });
  const b = new RedisSessionStore({ cluster: { nodes: [`127.0.0.1:${nodes[1]!.port}`] }, keys: two, log, keyPrefix: 'l:' });
  await a.open();
  await b.open();
  try {
    const t0 = Date.now();
    const withSid = (id: string, user: string, sid: string, provider = 'app') => ({ ...record(id, user, t0), provider, sid });
    // Ten sessions of one IdP session: their keys fall into different slots.
    for (let i = 0; i < 10; i++) await a.put(withSid(`sid-s${i}`, 'ann', 'idp-1'));
    await a.put(withSid('sid-other', 'ann', 'idp-2'));
    await a.put(withSid('sid-otherprov', 'ann', 'idp-1', 'other'));
    assert.equal(await b.deleteBySid('app', 'idp-1'), 10);
    for (let i = 0; i < 10; i++) assert.equal(await a.get(`sid-s${i}`), undefined);
    assert.ok(await a.get('sid-other'), 'another IdP session stays');
    assert.ok(await a.get('sid-otherprov'), 'the same sid at another provider stays');
    assert.equal(await b.deleteProviderUser('app', 'iss\u0000ann'), 1);
    assert.equal(await a.get('sid-other'), undefined);
    assert.ok(await a.get('sid-otherprov'), "the user's session at another provider stays");
    assert.equal(await a.recordOnce('jti-1', Date.now() + 5_000), true);
    assert.equal(await b.recordOnce('jti-1', Date.now() + 5_000), false);
    const locks = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).lockRefresh('sid-otherprov', 5_000)));
    assert.equal(locks.filter((t) => t !== null).length, 1, 'one holder across replicas');
    await a.unlockRefresh('sid-otherprov', locks.find((t) => t !== null)!);
    assert.ok(await b.lockRefresh('sid-otherprov', 5_000), 'free after its release');
  } finally {
    await a.close();
    await b.close();
  }
});
