// The Redis session store against a real redis-server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { RedisSessionStore, SessionStoreError, redactRedisUrl } from '../../src/sessions/redis-store.js';
import { sealRecord } from '../../src/sessions/sealed.js';
import type { SessionRecord } from '../../src/sessions/store.js';
import type { Logger } from '../../src/pipeline/logger.js';
import { startRedis, type RunningRedis } from '../support/redis.js';
import { parseConfig, ConfigError } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { freePort } from '../support/ports.js';

const log = pino({ level: 'silent' }) as unknown as Logger;
const keys = new Map([['app', randomBytes(32)], ['other', randomBytes(32)]]);

function record(id: string, user: string, provider = 'app', ttlMs = 60_000): SessionRecord {
  const now = Date.now();
  return {
    id,
    provider,
    userKey: `iss\u0000${user}`,
    createdAt: now,
    expiresAt: now + ttlMs,
    claims: { sub: user, email: `${user}@example.com`, groups: ['top-secret-group'] },
    idToken: 'header.payload.signature',
    accessToken: 'access.token.jwt',
  };
}

const userSet = (prefix: string, user: string) => `${prefix}user:${createHash('sha256').update(`iss\u0000${user}`).digest('hex')}`;

let redis: RunningRedis;
let raw: Redis;
const stores: RedisSessionStore[] = [];

async function openStore(opts: { keyPrefix?: string; keys?: ReadonlyMap<string, Buffer> } = {}): Promise<RedisSessionStore> {
  const s = new RedisSessionStore({ url: redis.url, keys: opts.keys ?? keys, log, keyPrefix: opts.keyPrefix });
  await s.open();
  stores.push(s);
  return s;
}

before(async () => {
  redis = await startRedis();
  raw = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await raw.connect();
});
after(async () => {
  for (const s of stores) await s.close();
  raw.disconnect();
  await redis.stop();
});

test('put then get, from the same store and from another one on the same Redis', async () => {
  const a = await openStore({ keyPrefix: 't1:' });
  const b = await openStore({ keyPrefix: 't1:' });
  const r = record('s1', 'alice');
  await a.put(r);
  assert.deepEqual(await a.get('s1'), r);
  assert.deepEqual(await b.get('s1'), r, 'a second replica sees the session');
  assert.equal(await b.get('nope'), undefined);
  assert.equal(await a.size(), 1);
  assert.ok((await raw.pttl('t1:session:s1')) > 59_000, 'PX = time left until expiresAt');
});

test('expiry: Redis drops the key at expiresAt, and an expired record is never returned', async () => {
  const s = await openStore({ keyPrefix: 't2:' });
  await s.put(record('short', 'alice', 'app', 300));
  const ttl = await raw.pttl('t2:session:short');
  assert.ok(ttl > 0 && ttl <= 300, `PTTL ${ttl}`);
  assert.ok(await s.get('short'));
  await new Promise((r) => setTimeout(r, 350));
  assert.equal(await s.get('short'), undefined);
  assert.equal(await raw.exists('t2:session:short'), 0);
  // A value still in Redis whose record says it expired (clock skew between replicas) is no session.
  const past = { ...record('skewed', 'bob'), expiresAt: Date.now() - 1 };
  await raw.set('t2:session:skewed', JSON.stringify({ p: 'app', u: 'x', d: sealRecord(keys.get('app')!, past) }), 'PX', 60_000);
  assert.equal(await s.get('skewed'), undefined);
  await raw.set('t2:session:skewed', JSON.stringify({ p: 'app', u: 'x', d: sealRecord(keys.get('app')!, { ...past, expiresAt: Date.now() + 60_000 }) }), 'PX', 60_000);
  assert.equal((await s.get('skewed'))?.claims.sub, 'bob', 'the same value, unexpired, is read');
  // Nothing is written for a record that is already over.
  await s.put(record('over', 'carol', 'app', -1));
  assert.equal(await raw.exists('t2:session:over'), 0);
});

test('the user set lives as long as the longest session and never shrinks', async () => {
  const s = await openStore({ keyPrefix: 't3:' });
  await s.put(record('a1', 'alice', 'app', 10_000));
  let ttl = await raw.pttl(userSet('t3:', 'alice'));
  assert.ok(ttl > 9_000 && ttl <= 10_000, `first session sets the expiry: ${ttl}`);
  await s.put(record('a2', 'alice', 'other', 120_000));
  ttl = await raw.pttl(userSet('t3:', 'alice'));
  assert.ok(ttl > 119_000, `a longer session extends it: ${ttl}`);
  await s.put(record('a3', 'alice', 'app', 5_000));
  ttl = await raw.pttl(userSet('t3:', 'alice'));
  assert.ok(ttl > 110_000, `a shorter session does not shorten it: ${ttl}`);
  assert.deepEqual((await raw.smembers(userSet('t3:', 'alice'))).sort(), ['a1', 'a2', 'a3']);
});

test('deleteUser ends every session of the user, across providers, and counts only live ones', async () => {
  const s = await openStore({ keyPrefix: 't4:' });
  const other = await openStore({ keyPrefix: 't4:' });
  await s.put(record('s1', 'alice'));
  await other.put(record('s2', 'alice', 'other'));
  await s.put(record('s3', 'bob'));
  await s.put(record('gone', 'alice', 'app', 50));
  await new Promise((r) => setTimeout(r, 80)); // 'gone' expired: its id is still in alice's set
  assert.equal(await other.deleteUser('iss\u0000alice'), 2);
  assert.equal(await s.get('s1'), undefined);
  assert.equal(await s.get('s2'), undefined);
  assert.equal((await s.get('s3'))?.claims.sub, 'bob');
  assert.equal(await raw.exists(userSet('t4:', 'alice')), 0, 'the emptied set is gone');
  assert.equal(await s.deleteUser('iss\u0000alice'), 0);
  assert.equal(await s.deleteUser('iss\u0000nobody'), 0);
  assert.equal(await s.size(), 1);
  // delete(id) removes one session and its id from the user set.
  await s.put(record('s4', 'bob'));
  await s.delete('s3');
  assert.equal(await s.get('s3'), undefined);
  assert.deepEqual(await raw.smembers(userSet('t4:', 'bob')), ['s4']);
  await s.delete('never-existed');
  assert.equal(await s.deleteUser('iss\u0000bob'), 1);
});

test('encryption at rest: no claim or token in Redis; tampered, moved or foreign values are no session', async () => {
  const s = await openStore({ keyPrefix: 't5:' });
  await s.put(record('s1', 'alice'));
  await s.put(record('s2', 'bob'));
  const all = await raw.keys('t5:*');
  assert.ok(all.length >= 3);
  for (const k of all) {
    const text = (await raw.type(k)) === 'set' ? (await raw.smembers(k)).join(',') : (await raw.get(k))!;
    assert.doesNotMatch(text, /alice|bob|example\.com|top-secret-group|header\.payload|access\.token|iss/, `${k} holds no claims or tokens`);
  }
  // Another cookie_secret (other keys) cannot read it.
  const foreign = await openStore({ keyPrefix: 't5:', keys: new Map([['app', randomBytes(32)]]) });
  assert.equal(await foreign.get('s1'), undefined);
  // A provider that left the config: its sessions are gone.
  const fewer = await openStore({ keyPrefix: 't5:', keys: new Map([['other', keys.get('other')!]]) });
  assert.equal(await fewer.get('s1'), undefined);
  // The id is authenticated: bob's value copied under alice's id does not decrypt.
  await raw.set('t5:session:s1', (await raw.get('t5:session:s2'))!, 'PX', 60_000);
  assert.equal(await s.get('s1'), undefined);
  // Flipped bits, garbage, non-JSON.
  const value = JSON.parse((await raw.get('t5:session:s2'))!) as { p: string; u: string; d: string };
  const d = Buffer.from(value.d, 'base64');
  d[d.length - 1]! ^= 1;
  await raw.set('t5:session:s3', JSON.stringify({ ...value, d: d.toString('base64') }));
  assert.equal(await s.get('s3'), undefined);
  for (const junk of ['not json', '{"p":"app","d":"AAAA"}', '{}', 'null']) {
    await raw.set('t5:session:junk', junk);
    assert.equal(await s.get('junk'), undefined, junk);
  }
  assert.equal((await s.get('s2'))?.claims.sub, 'bob');
});

test('key_prefix separates outposts sharing one Redis; size() counts only its own sessions', async () => {
  const a = await openStore({ keyPrefix: 'pre[*]?:' }); // glob characters in the prefix
  const b = await openStore({ keyPrefix: 'pre:' });
  await a.put(record('x1', 'alice'));
  await a.put(record('x2', 'bob'));
  await b.put(record('x1', 'carol'));
  assert.equal(await a.size(), 2);
  assert.equal(await b.size(), 1);
  assert.equal((await a.get('x1'))?.claims.sub, 'alice');
  assert.equal((await b.get('x1'))?.claims.sub, 'carol');
  assert.equal(await raw.exists('pre[*]?:session:x2'), 1);
});

test('open() fails fast with the URL, without its password, when Redis is unreachable', async () => {
  const port = await freePort();
  const url = `redis://portcullis:hunter2-secret@127.0.0.1:${port}/0`;
  const s = new RedisSessionStore({ url, keys, log });
  const t0 = Date.now();
  await assert.rejects(s.open(), (err: Error) => {
    assert.match(err.message, new RegExp(`cannot use Redis at redis://portcullis@127\\.0\\.0\\.1:${port}/0: .*ECONNREFUSED`));
    assert.doesNotMatch(err.message, /hunter2/);
    return true;
  });
  assert.ok(Date.now() - t0 < 2_000, 'no endless retrying');
  await s.close();
  assert.equal(redactRedisUrl('rediss://:pw@cache.internal:6380'), 'rediss://cache.internal:6380');
});

test('a Redis outage makes calls fail quickly with a SessionStoreError, and they work again once it is back', async () => {
  const own = await startRedis();
  const s = new RedisSessionStore({ url: own.url, keys, log });
  try {
    await s.open();
    await s.put(record('o1', 'alice'));
    await own.stop();
    for (const call of [() => s.get('o1'), () => s.put(record('o2', 'alice')), () => s.deleteUser('iss\u0000alice')]) {
      const t0 = Date.now();
      await assert.rejects(call(), (err: Error) => {
        assert.ok(err instanceof SessionStoreError, String(err));
        assert.doesNotMatch(err.message, /o1|o2|alice/, 'no command arguments in the message');
        return true;
      });
      assert.ok(Date.now() - t0 < 1_500, `failed after ${Date.now() - t0} ms`);
    }
    const back = await startRedis({ port: own.port });
    try {
      const deadline = Date.now() + 5_000;
      let result: unknown = 'error';
      while (Date.now() < deadline) {
        try {
          result = await s.get('o1');
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      assert.equal(result, undefined, 'answers again (the new Redis is empty)');
      await s.put(record('o3', 'alice'));
      assert.equal((await s.get('o3'))?.claims.sub, 'alice');
    } finally {
      await s.close();
      await back.stop();
    }
  } finally {
    await s.close();
    await own.stop();
  }
});

test('close() does not hang while Redis is down', async () => {
  const own = await startRedis();
  const s = new RedisSessionStore({ url: own.url, keys, log });
  await s.open();
  await own.stop();
  await assert.rejects(s.get('x'), SessionStoreError);
  const t0 = Date.now();
  await s.close();
  assert.ok(Date.now() - t0 < 1_500, `closed after ${Date.now() - t0} ms`);
});

const configWith = (store: string) =>
  [
    'outpost:',
    `  session_store: ${store}`,
    '  log_level: silent',
    'providers:',
    '  - name: app',
    '    issuer: http://127.0.0.1:1/',
    '    client_id: c',
    '    client_secret: s',
    '    cookie_secret: 0123456789abcdef0123',
    '    external_host: http://app.localtest',
    '    internal_host: http://127.0.0.1:2',
    '',
  ].join('\n');

test('config: session_store type redis, with defaults and ${ENV}; mistakes are reported on its fields', () => {
  const env = { REDIS_PASSWORD: 'pw' };
  assert.deepEqual(parseConfig(configWith('{ type: redis, url: "redis://:${REDIS_PASSWORD}@127.0.0.1:6379/1" }'), { env }).outpost.session_store, {
    type: 'redis',
    url: 'redis://:pw@127.0.0.1:6379/1',
    key_prefix: 'portcullis:',
  });
  assert.deepEqual(parseConfig(configWith('{ type: redis, url: "rediss://cache:6380", key_prefix: "p1:" }'), { env }).outpost.session_store, {
    type: 'redis',
    url: 'rediss://cache:6380',
    key_prefix: 'p1:',
  });
  assert.deepEqual(parseConfig(configWith('{ type: embedded }'), { env }).outpost.session_store, { type: 'embedded', path: '.portcullis/sessions.db', max_sessions_per_user: 100 });
  const failing: [string, RegExp][] = [
    ['{ type: redis, url: "http://cache:6379" }', /outpost\.session_store\.url: must match pattern/],
    ['{ type: redis }', /outpost\.session_store: missing required field "url"/],
    ['{ type: redis, url: "redis://cache", path: x }', /outpost\.session_store\.path: unknown field "path"/],
    ['{ type: embedded, url: "redis://cache" }', /outpost\.session_store\.url: unknown field "url"/],
    ['{ type: memcached }', /outpost\.session_store\.type: must be one of "embedded", "redis"/],
  ];
  for (const [store, expected] of failing) {
    assert.throws(() => parseConfig(configWith(store), { env }), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, expected, store);
      return true;
    });
  }
});

test('an outpost configured with an unreachable Redis does not start, and says which one', async () => {
  const port = await freePort();
  const config = parseConfig(configWith(`{ type: redis, url: "redis://:hunter2@127.0.0.1:${port}" }`), { env: {} });
  await assert.rejects(Outpost.create(config, { logger: pino({ level: 'silent' }) }), (err: Error) => {
    assert.match(err.message, new RegExp(`cannot use Redis at redis://127\\.0\\.0\\.1:${port}`));
    assert.doesNotMatch(err.message, /hunter2/);
    return true;
  });
});

test('additionalHeaders names: recorded once in Redis, seen by a new store at open, by a running replica within the refresh interval, and at once from a session it loads', async () => {
  const a = await openStore({ keyPrefix: 'hn:' });
  const running = new RedisSessionStore({ url: redis.url, keys, log, keyPrefix: 'hn:', headerNamesRefreshMs: 100 });
  await running.open();
  stores.push(running);
  const lazy = new RedisSessionStore({ url: redis.url, keys, log, keyPrefix: 'hn:', headerNamesRefreshMs: 60_000 });
  await lazy.open();
  stores.push(lazy);
  assert.equal(a.headerNames().size, 0);
  const live = a.headerNames();
  await a.recordHeaderNames(['x-team', 'x-tenant']);
  await a.recordHeaderNames(['x-team']);
  assert.deepEqual([...live].sort(), ['x-team', 'x-tenant'], 'the same Set, updated in place');
  assert.deepEqual((await raw.smembers('hn:header-names')).sort(), ['x-team', 'x-tenant']);
  const fresh = await openStore({ keyPrefix: 'hn:' });
  assert.deepEqual([...fresh.headerNames()].sort(), ['x-team', 'x-tenant'], 'a restarted replica knows them at open');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual([...running.headerNames()].sort(), ['x-team', 'x-tenant'], 'a running replica learns them by refresh');
  assert.equal(lazy.headerNames().has('x-team'), false, 'not refreshed yet (60 s interval)');
  await a.put({ ...record('h1', 'alice'), proxy: { additionalHeaders: [['x-team', 'admins']] } });
  await lazy.get('h1');
  assert.equal(lazy.headerNames().has('x-team'), true, 'a loaded session teaches its names at once');
  const other = await openStore({ keyPrefix: 'hn-other:' });
  assert.equal(other.headerNames().size, 0, 'key_prefix separates outposts');
});
