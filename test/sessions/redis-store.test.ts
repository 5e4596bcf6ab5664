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
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';

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

/** The user's session index (a ZSET scored by creation time). */
const userSet = (prefix: string, user: string) => `${prefix}user-sessions:${createHash('sha256').update(`iss\u0000${user}`).digest('hex')}`;
/** The SET older versions kept per user. */
const legacySet = (prefix: string, user: string) => `${prefix}user:${createHash('sha256').update(`iss\u0000${user}`).digest('hex')}`;

let redis: RunningRedis;
let raw: Redis;
const stores: RedisSessionStore[] = [];

async function openStore(opts: { keyPrefix?: string; keys?: ReadonlyMap<string, Buffer>; maxSessionsPerUser?: number } = {}): Promise<RedisSessionStore> {
  const s = new RedisSessionStore({ url: redis.url, log, ...opts, keys: opts.keys ?? keys });
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
  assert.deepEqual((await raw.zrange(userSet('t3:', 'alice'), '0', '-1')).sort(), ['a1', 'a2', 'a3']);
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
  assert.deepEqual(await raw.zrange(userSet('t4:', 'bob'), '0', '-1'), ['s4']);
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
    const type = await raw.type(k);
    const text = type === 'set' ? (await raw.smembers(k)).join(',') : type === 'zset' ? (await raw.zrange(k, '0', '-1')).join(',') : (await raw.get(k))!;
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
    max_sessions_per_user: 100,
  });
  assert.deepEqual(parseConfig(configWith('{ type: redis, url: "rediss://cache:6380", key_prefix: "p1:" }'), { env }).outpost.session_store, {
    type: 'redis',
    url: 'rediss://cache:6380',
    key_prefix: 'p1:',
    max_sessions_per_user: 100,
  });
  assert.deepEqual(
    parseConfig(
      configWith('{ type: redis, sentinel: { master_name: pc, nodes: ["10.0.0.1:26379", "[::1]:26380"], password: "${REDIS_PASSWORD}" }, username: portcullis, password: "${REDIS_PASSWORD}", tls: true, db: 3, max_sessions_per_user: 5 }'),
      { env },
    ).outpost.session_store,
    {
      type: 'redis',
      sentinel: { master_name: 'pc', nodes: ['10.0.0.1:26379', '[::1]:26380'], password: 'pw', tls: false },
      username: 'portcullis',
      password: 'pw',
      tls: true,
      db: 3,
      key_prefix: 'portcullis:',
      max_sessions_per_user: 5,
    },
  );
  assert.deepEqual(parseConfig(configWith('{ type: redis, cluster: { nodes: ["10.0.0.1:7000"] }, username: u, password: p }'), { env }).outpost.session_store, {
    type: 'redis',
    cluster: { nodes: ['10.0.0.1:7000'] },
    username: 'u',
    password: 'p',
    key_prefix: 'portcullis:',
    max_sessions_per_user: 100,
  });
  assert.deepEqual(parseConfig(configWith('{ type: embedded }'), { env }).outpost.session_store, { type: 'embedded', path: '.portcullis/sessions.db', max_sessions_per_user: 100 });
  const failing: [string, RegExp][] = [
    ['{ type: redis, url: "http://cache:6379" }', /outpost\.session_store\.url: must match pattern/],
    ['{ type: redis }', /outpost\.session_store: give exactly one of url, sentinel or cluster/],
    ['{ type: redis, url: "redis://a:1", cluster: { nodes: ["b:2"] } }', /outpost\.session_store: give exactly one of url, sentinel or cluster \(found url and cluster\)/],
    ['{ type: redis, url: "redis://a:1", password: x }', /outpost\.session_store\.password: password is part of the url/],
    ['{ type: redis, sentinel: { master_name: m, nodes: ["a"] } }', /outpost\.session_store\.sentinel\.nodes\[0\]: must match pattern/],
    ['{ type: redis, sentinel: { nodes: ["a:1"] } }', /outpost\.session_store\.sentinel: missing required field "master_name"/],
    ['{ type: redis, cluster: { nodes: ["a:1"] }, wait_replicas: 1 }', /outpost\.session_store\.wait_replicas: wait_replicas is not available with a Redis Cluster/],
    ['{ type: redis, cluster: { nodes: ["a:1"] }, db: 2 }', /outpost\.session_store\.db: a Redis Cluster has only database 0/],
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

test('the same stored value is the same record object (stage caches hit); a new value is a new object', async () => {
  const s = await openStore({ keyPrefix: 't9:' });
  await s.put(record('s1', 'alice'));
  const first = await s.get('s1');
  assert.ok(first);
  assert.equal(await s.get('s1'), first);
  const other = await openStore({ keyPrefix: 't9:' });
  await other.put({ ...record('s1', 'alice'), claims: { sub: 'alice', email: 'new@example.com' } });
  const second = await s.get('s1');
  assert.notEqual(second, first, 'another replica replaced it: the new value is decrypted');
  assert.equal(second?.claims.email, 'new@example.com');
  await other.delete('s1');
  assert.equal(await s.get('s1'), undefined, 'a cached record is never returned for a deleted key');
});

test('max_sessions_per_user: the oldest sessions of the user are ended beyond it; other users keep theirs', async () => {
  const s = await openStore({ keyPrefix: 't10:', maxSessionsPerUser: 3 });
  const t0 = Date.now();
  await s.put(record('bob1', 'bob'));
  for (let i = 1; i <= 5; i++) await s.put({ ...record(`a${i}`, 'alice', i % 2 ? 'app' : 'other'), createdAt: t0 + i });
  assert.equal(await s.get('a1'), undefined);
  assert.equal(await s.get('a2'), undefined);
  for (const id of ['a3', 'a4', 'a5', 'bob1']) assert.ok(await s.get(id), id);
  assert.deepEqual(await raw.zrange(userSet('t10:', 'alice'), '0', '-1'), ['a3', 'a4', 'a5']);
  // The default: 150 logins of one user leave 100 live sessions.
  const d = await openStore({ keyPrefix: 't11:' });
  for (let i = 0; i < 150; i++) await d.put({ ...record(`d${i}`, 'dave'), createdAt: t0 + i });
  assert.equal(await d.size(), 100);
  assert.equal(await d.get('d49'), undefined);
  assert.ok(await d.get('d50'));
});

test('sign-out also ends sessions indexed by an older version (a SET per user)', async () => {
  const s = await openStore({ keyPrefix: 't12:' });
  const key = keys.get('app')!;
  const old = record('legacy', 'alice');
  await raw.set('t12:session:legacy', JSON.stringify({ p: 'app', u: 'x', d: sealRecord(key, old) }), 'PX', 60_000);
  await raw.sadd(legacySet('t12:', 'alice'), 'legacy');
  await s.put(record('new', 'alice'));
  assert.ok(await s.get('legacy'));
  assert.equal(await s.deleteUser('iss\u0000alice'), 2);
  assert.equal(await s.get('legacy'), undefined);
  assert.equal(await raw.exists(legacySet('t12:', 'alice')), 0);
});

test('wait_replicas: a change no replica acknowledged is an error, not a success', async () => {
  // This Redis has no replica: WAIT 1 answers 0 within its timeout.
  const s = new RedisSessionStore({ url: redis.url, keys, log, keyPrefix: 't13:', waitReplicas: 1, commandTimeoutMs: 400 });
  await s.open();
  stores.push(s);
  await assert.rejects(s.put(record('w1', 'alice')), (err: Error) => err instanceof SessionStoreError && /reached 0 of 1 replicas/.test(err.message));
  await assert.rejects(s.deleteUser('iss\u0000alice'), SessionStoreError);
});

test('an ACL user limited to its key prefix and the commands the docs list can use the store; one without key access cannot', async () => {
  // The ACL line of docs/session-stores.md, for prefix acl:.
  await raw.call('ACL', 'SETUSER', 'portcullis', 'reset', 'on', '>s3cret', '~acl:*', 'resetchannels', '-@all', '+@read', '+@write', '+@transaction', '+@connection', '+scan', '+wait', '+info', '+eval');
  await raw.call('ACL', 'SETUSER', 'stranger', 'reset', 'on', '>s3cret', '~elsewhere:*', '-@all', '+@read', '+@write', '+@transaction', '+@connection', '+scan');
  const url = `redis://portcullis:s3cret@127.0.0.1:${redis.port}`;
  const s = new RedisSessionStore({ url, keys, log, keyPrefix: 'acl:' });
  await s.open();
  stores.push(s);
  await s.put(record('acl1', 'alice'));
  assert.equal((await s.get('acl1'))?.claims.sub, 'alice');
  await s.recordHeaderNames(['x-acl']);
  assert.equal(await s.size(), 1);
  assert.equal(await s.deleteUser('iss\u0000alice'), 1);
  // Logout from the IdP and the refresh lock (its release is a one-key script: +eval).
  await s.put({ ...record('acl3', 'carol'), sid: 'idp-sid' });
  assert.equal(await s.deleteBySid('app', 'idp-sid'), 1);
  assert.equal(await s.recordOnce('jti-acl', Date.now() + 5_000), true);
  const lock = await s.lockRefresh('acl3', 5_000);
  assert.ok(lock);
  await s.unlockRefresh('acl3', lock);
  assert.ok(await s.lockRefresh('acl3', 5_000), 'released by its holder');
  const denied = new RedisSessionStore({ url: `redis://stranger:s3cret@127.0.0.1:${redis.port}`, keys, log, keyPrefix: 'acl:' });
  await denied.open().catch(() => undefined);
  stores.push(denied);
  await assert.rejects(denied.put(record('acl2', 'bob')), (err: Error) => err instanceof SessionStoreError && /NOPERM/.test(err.message) && !/s3cret/.test(err.message));
  const wrongPassword = new RedisSessionStore({ url: `redis://portcullis:nope@127.0.0.1:${redis.port}`, keys, log, keyPrefix: 'acl:' });
  await assert.rejects(wrongPassword.open(), (err: Error) => /WRONGPASS|invalid username-password/.test(err.message) && !/nope/.test(err.message));
});

test('rediss:// is TLS with certificate checks: a server whose certificate is not trusted is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'redis-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], { keySize: 2048, algorithm: 'sha256', notAfterDate: new Date(Date.now() + 86_400_000), extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }] });
  writeFileSync(join(dir, 'cert.pem'), pems.cert);
  writeFileSync(join(dir, 'key.pem'), pems.private);
  const tlsPort = await freePort();
  const tlsRedis = await startRedis({
    args: ['--tls-port', String(tlsPort), '--tls-cert-file', join(dir, 'cert.pem'), '--tls-key-file', join(dir, 'key.pem'), '--tls-ca-cert-file', join(dir, 'cert.pem'), '--tls-auth-clients', 'no'],
  });
  t.after(() => tlsRedis.stop());
  const s = new RedisSessionStore({ url: `rediss://127.0.0.1:${tlsPort}`, keys, log, connectTimeoutMs: 2_000 });
  await assert.rejects(s.open(), /self[- ]signed|certificate/i);
});
