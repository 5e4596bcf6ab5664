// The store methods behind logout from the identity provider and refresh — ending sessions by
// (provider, sid) and by (provider, user), replay records, refresh locks — on both stores, each
// with two store instances sharing state: the embedded SQLite store (two processes or workers on
// one database file) and Redis (two replicas).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { EmbeddedSessionStore } from '../../src/sessions/embedded-store.js';
import { Redis } from 'ioredis';
import { RedisSessionStore } from '../../src/sessions/redis-store.js';
import type { SessionRecord, SessionStore } from '../../src/sessions/store.js';
import type { Logger } from '../../src/pipeline/logger.js';
import { startRedis, type RunningRedis } from '../support/redis.js';

const log = pino({ level: 'silent' }) as unknown as Logger;
const keys = new Map([['app', randomBytes(32)], ['other', randomBytes(32)]]);

function record(user: string, provider: string, sid?: string, ttlMs = 60_000): SessionRecord {
  const now = Date.now();
  return {
    id: randomBytes(16).toString('base64url'),
    provider,
    userKey: `iss\u0000${user}`,
    createdAt: now,
    expiresAt: now + ttlMs,
    claims: { sub: user },
    idToken: 'h.p.s',
    ...(sid ? { sid } : {}),
  };
}

async function live(store: SessionStore, r: SessionRecord): Promise<boolean> {
  return (await store.get(r.id)) !== undefined;
}

/** The same behaviour on every store; `a` and `b` share state (the same store, or two replicas). */
function suite(name: string, open: () => Promise<{ a: SessionStore; b: SessionStore; reopen?: () => Promise<SessionStore> }>) {
  describe(name, () => {
    let a: SessionStore;
    let b: SessionStore;
    let reopen: (() => Promise<SessionStore>) | undefined;
    before(async () => {
      ({ a, b, reopen } = await open());
    });

    test('deleteBySid ends exactly the sessions of that provider and IdP session', async () => {
      const s1 = record('alice', 'app', 'sid-1');
      const s2 = record('alice', 'app', 'sid-1'); // a second login in the same IdP session
      const s3 = record('alice', 'app', 'sid-2'); // another IdP session (another device)
      const s4 = record('alice', 'other', 'sid-1'); // the same sid at another provider
      const s5 = record('bob', 'app');
      for (const r of [s1, s2, s3, s4, s5]) await a.put(r);
      assert.equal(await b.deleteBySid('app', 'sid-1'), 2);
      assert.deepEqual(await Promise.all([s1, s2, s3, s4, s5].map((r) => live(a, r))), [false, false, true, true, true]);
      assert.equal(await b.deleteBySid('app', 'sid-1'), 0, 'a second time ends nothing');
      assert.equal(await a.deleteBySid('app', 'unknown'), 0);
    });

    test('deleteProviderUser ends every session of the user at that provider only', async () => {
      const s1 = record('carol', 'app', 'c-1');
      const s2 = record('carol', 'app');
      const s3 = record('carol', 'other', 'c-1');
      const s4 = record('dave', 'app');
      for (const r of [s1, s2, s3, s4]) await a.put(r);
      assert.equal(await b.deleteProviderUser('app', 'iss\u0000carol'), 2);
      assert.deepEqual(await Promise.all([s1, s2, s3, s4].map((r) => live(a, r))), [false, false, true, true]);
      // The user's other provider still ends with a sign-out.
      assert.equal(await a.deleteUser('iss\u0000carol'), 1);
    });

    test('a refreshed record (same id) stays findable by its sid', async () => {
      const s1 = record('erin', 'app', 'e-1');
      await a.put(s1);
      await a.put({ ...s1, idToken: 'new.id.token', expiresAt: Date.now() + 120_000 });
      assert.equal((await b.get(s1.id))?.idToken, 'new.id.token');
      assert.equal(await b.deleteBySid('app', 'e-1'), 1);
      assert.equal(await live(a, s1), false);
    });

    test('recordOnce: first true, then false until it expires', async () => {
      const key = `jti-${randomBytes(4).toString('hex')}`;
      assert.equal(await a.recordOnce(key, Date.now() + 300), true);
      assert.equal(await b.recordOnce(key, Date.now() + 300), false, 'a replay, on the other replica too');
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(await b.recordOnce(key, Date.now() + 300), true, 'forgotten after its expiry');
    });

    test('lockRefresh: one holder at a time, across replicas; released by its token only; expires', async () => {
      const id = randomBytes(8).toString('hex');
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).lockRefresh(id, 5_000)));
      const holders = results.filter((t) => t !== null);
      assert.equal(holders.length, 1, 'exactly one of 20 concurrent attempts gets the lock');
      await a.unlockRefresh(id, 'not-the-token');
      assert.equal(await b.lockRefresh(id, 5_000), null, 'a wrong token does not release it');
      await b.unlockRefresh(id, holders[0]!);
      const again = await a.lockRefresh(id, 200);
      assert.ok(again, 'free after release');
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(await b.lockRefresh(id, 200), 'free after its ttl');
    });

    if (name.startsWith('embedded')) {
      test('the database keeps the sid index across a restart, and the deletions', async () => {
        const s1 = record('frank', 'app', 'f-1');
        const s2 = record('frank', 'app', 'f-2');
        await a.put(s1);
        await a.put(s2);
        assert.equal(await a.deleteBySid('app', 'f-2'), 1);
        await a.close();
        await b.close();
        const c = await reopen!();
        assert.equal(await live(c, s1), true);
        assert.equal(await live(c, s2), false, 'a session ended by sid stays ended after a restart');
        assert.equal(await c.deleteBySid('app', 'f-1'), 1);
        await c.close();
      });
    }
  });
}

const dir = mkdtempSync(join(tmpdir(), 'portcullis-idp-logout-'));
after(() => rmSync(dir, { recursive: true, force: true }));

suite('embedded store (two processes on one SQLite file)', async () => {
  const path = join(dir, 'sessions.db');
  const make = async () => {
    const s = new EmbeddedSessionStore({ path, keys, log });
    await s.open();
    return s;
  };
  return { a: await make(), b: await make(), reopen: make };
});

let redis: RunningRedis | undefined;
const redisStores: RedisSessionStore[] = [];
after(async () => {
  for (const s of redisStores) await s.close();
  await redis?.stop();
});

suite('Redis store (two replicas)', async () => {
  redis = await startRedis();
  const make = async () => {
    const s = new RedisSessionStore({ url: redis!.url, keys, log, keyPrefix: 'idp:' });
    await s.open();
    redisStores.push(s);
    return s;
  };
  return { a: await make(), b: await make() };
});

test('Redis: the sid index does not outlive its sessions (ended entries trimmed, the key expires with the longest)', async () => {
  assert.ok(redis, 'the Redis suite ran');
  const store = new RedisSessionStore({ url: redis!.url, keys, log, keyPrefix: 'sidx:' });
  await store.open();
  redisStores.push(store);
  const raw = new Redis(redis!.url);
  try {
    const short = record('gina', 'app', 'g-1', 300);
    await store.put(short);
    const [sidKey] = await raw.keys('sidx:sid-sessions:*');
    assert.ok(sidKey, 'a sid index key exists');
    const ttl = await raw.pttl(sidKey);
    assert.ok(ttl > 0 && ttl <= 300, `it expires with its session (PTTL ${ttl})`);
    await new Promise((r) => setTimeout(r, 400));
    // A new login into the same IdP session trims the ended entry.
    const next = record('gina', 'app', 'g-1', 60_000);
    await store.put(next);
    assert.deepEqual(await raw.zrange(sidKey, '0', '-1'), [next.id]);
    assert.ok((await raw.pttl(sidKey)) > 30_000, 'the key now lives as long as the longest session');
    // Ended by a sign-out: out of the index too.
    await store.delete(next.id);
    assert.equal(await raw.exists(sidKey), 0);
  } finally {
    raw.disconnect();
  }
});
