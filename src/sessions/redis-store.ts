// The shared session store: sessions in Redis, so that several outpost replicas share logins and
// a restart loses nothing. One Redis (redis:// or rediss://), a Sentinel-managed master/replica
// set (failover), or a Redis Cluster.
//
// Keys, under a configurable prefix (default `portcullis:`):
//   <prefix>session:<id>                    → `{"p":provider,"u":sha256(userKey),"d":sealed record}`,
//                                             PX = time left until expiresAt. `d` is sealed exactly like
//                                             an embedded row (AES-256-GCM, the provider's key, the id as
//                                             AAD), so a copy of the database reveals no claims or tokens.
//   <prefix>user-sessions:<sha256(userKey)> → ZSET of the user's session ids scored by creation time
//                                             (the cap ends the lowest); its expiry is extended to the
//                                             longest session, so sign-out always finds every live one.
//   <prefix>user:<sha256(userKey)>          → the SET older versions kept instead: still read (and
//                                             emptied) by sign-out, so their sessions end too.
//   <prefix>header-names                    → SET of the additionalHeaders names seen at any login (lower
//                                             case, no expiry): every replica strips them from requests.
//                                             Each replica re-reads it every HEADER_NAMES_REFRESH_MS and
//                                             learns a name at once from a session it loads.
//   <prefix>sid-sessions:<sha256(provider, sid)> → ZSET of the session ids of one IdP session (OIDC
//                                             back-/front-channel logout by sid) scored by their end:
//                                             ended entries are trimmed at every login into it and the
//                                             key expires with its longest session.
//   <prefix>once:<key>                      → a replay record (a logout token's jti), PX until it expires.
//   <prefix>refresh-lock:<id>               → a session's refresh lock (SET NX PX; released by its token).
// Every command names one key (or keys of one hash slot), so the same code runs on a Cluster. A
// sign-out deletes the sessions first and their index entries after, so a failure half way
// leaves them findable by the next sign-out; it answers success only when every deletion was
// acknowledged (and, with wait_replicas, replicated).
//
// A Redis outage makes store calls reject quickly (small retry budget, command timeout); the auth
// stage treats a rejection as "no session, store unavailable": allowlisted paths are served
// anonymously, everything else answers 503 — a request is never let through without its session.
// Requires Redis 7.0 or later (PEXPIRE … NX / GT).
import { createHash, randomBytes } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { DEFAULT_MAX_SESSIONS_PER_USER, HEADER_NAMES_REFRESH_MS, SessionStoreError, userHashOf, type SessionRecord, type SessionStore } from './store.js';
import { sealRecord, unsealRecord } from './sealed.js';
import type { Logger } from '../pipeline/logger.js';

export const DEFAULT_KEY_PREFIX = 'portcullis:';

export interface RedisSentinelOptions {
  /** The master's name in the sentinels' configuration (`sentinel monitor <name> …`). */
  masterName: string;
  /** `host:port` of each sentinel (at least one; list them all). */
  nodes: string[];
  /** The sentinels' own ACL user and password, when they require one. */
  username?: string;
  password?: string;
  /** TLS to the sentinels. */
  tls?: boolean;
}

export interface RedisStoreOptions {
  /** One Redis: `redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS). */
  url?: string;
  /** A master found through Redis Sentinel (instead of url). */
  sentinel?: RedisSentinelOptions;
  /** A Redis Cluster, by `host:port` of some of its nodes (instead of url). */
  cluster?: { nodes: string[] };
  /** With sentinel / cluster: the data nodes' ACL user, password, TLS and (sentinel) database. */
  username?: string;
  password?: string;
  tls?: boolean;
  db?: number;
  /** Prefix of every key (default `portcullis:`). */
  keyPrefix?: string;
  /** Live sessions kept per user; beyond it the oldest is ended (0: no cap). */
  maxSessionsPerUser?: number;
  /**
   * Replicas that must acknowledge a login or sign-out (WAIT) before it is answered, so that a
   * failover cannot lose it (default: 1 with sentinel, else 0; not available with cluster).
   */
  waitReplicas?: number;
  /** Encryption key of each provider, by provider name. */
  keys: ReadonlyMap<string, Buffer>;
  log: Logger;
  /** How long open() waits for Redis (default 5 s). */
  connectTimeoutMs?: number;
  /** How long one command may take before it fails (default 2 s). */
  commandTimeoutMs?: number;
  /** How often the header-names set is re-read (default HEADER_NAMES_REFRESH_MS). */
  headerNamesRefreshMs?: number;
  /** Decrypted records kept (default 10 000; 0: none — benchmarks of the uncached path). */
  recordCacheSize?: number;
}

interface StoredValue {
  /** Provider name: selects the key. */
  p: string;
  /** sha256 of the user key: the user set the id belongs to. */
  u: string;
  /** The sealed record. */
  d: string;
  /** sha256 of provider + the IdP's sid, when the ID token named one: the sid index it is in. */
  s?: string;
}

function sidHash(provider: string, sid: string): string {
  return createHash('sha256').update(`${provider}\u0000${sid}`).digest('hex');
}

/** Deletes the lock only while it is still this holder's (one key: one slot). */
const UNLOCK_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

// A failed call rejects SessionStoreError (store.ts); re-exported for existing importers.
export { SessionStoreError };

/** The URL as it may be logged: without its password. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.href;
  } catch {
    return '(unparseable Redis URL)';
  }
}

/** `host:port` (or `[v6]:port`) → ioredis's node form. */
function hostPort(node: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(node);
  if (!m) throw new Error(`not host:port: ${node}`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Where the store is, for logs and errors (never a password). */
export function describeRedis(opts: Pick<RedisStoreOptions, 'url' | 'sentinel' | 'cluster'>): string {
  if (opts.sentinel) return `sentinel ${opts.sentinel.masterName} via ${opts.sentinel.nodes.join(',')}`;
  if (opts.cluster) return `cluster ${opts.cluster.nodes.join(',')}`;
  return redactRedisUrl(opts.url ?? '');
}

/** Decrypted records kept per process; beyond it the oldest entry goes. */
const RECORD_CACHE_LIMIT = 10_000;

function parseStored(raw: string): StoredValue | undefined {
  try {
    return JSON.parse(raw) as StoredValue;
  } catch {
    return undefined;
  }
}

/** Escapes glob characters for SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

export class RedisSessionStore implements SessionStore {
  private readonly client: Redis | Cluster;
  private readonly prefix: string;
  private readonly where: string;
  private readonly cap: number;
  private readonly waitReplicas: number;
  /** 'down' while Redis is unreachable after open() (one log line per outage and recovery). */
  private state: 'opening' | 'up' | 'down' = 'opening';
  private lastError = '';
  private readonly names = new Set<string>();
  private namesTimer: NodeJS.Timeout | null = null;
  /** The record decrypted from a stored value, while that value is what Redis returns. */
  private readonly cache = new Map<string, { raw: string; record: SessionRecord; key: Buffer }>();

  constructor(private readonly opts: RedisStoreOptions) {
    const modes = [opts.url, opts.sentinel, opts.cluster].filter((x) => x !== undefined).length;
    if (modes !== 1) throw new Error('session store: give exactly one of url, sentinel or cluster');
    this.prefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.where = describeRedis(opts);
    this.cap = opts.maxSessionsPerUser ?? DEFAULT_MAX_SESSIONS_PER_USER;
    this.waitReplicas = opts.waitReplicas ?? (opts.sentinel ? 1 : 0);
    if (opts.cluster && this.waitReplicas > 0) throw new Error('session store: wait_replicas is not available with a Redis Cluster');
    const common: RedisOptions = {
      lazyConnect: true,
      connectTimeout: opts.connectTimeoutMs ?? 5_000,
      commandTimeout: opts.commandTimeoutMs ?? 2_000,
      // During an outage a queued command fails after two reconnection attempts (≤ ~0.5 s while
      // connections are refused) or after commandTimeout (a host that does not answer at all).
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(times * 50, 250),
      connectionName: 'portcullis',
    };
    const auth: RedisOptions = {
      ...(opts.username !== undefined ? { username: opts.username } : {}),
      ...(opts.password !== undefined ? { password: opts.password } : {}),
      ...(opts.tls ? { tls: {} } : {}),
    };
    if (opts.sentinel) {
      const s = opts.sentinel;
      this.client = new Redis({
        ...common,
        ...auth,
        db: opts.db ?? 0,
        name: s.masterName,
        sentinels: s.nodes.map(hostPort),
        ...(s.username !== undefined ? { sentinelUsername: s.username } : {}),
        ...(s.password !== undefined ? { sentinelPassword: s.password } : {}),
        ...(s.tls ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
        // Not failoverDetector: with it, ioredis 6.0.0 ends the connection for good at the failover
        // ("Connection is closed." ever after; seen in test/e2e/redis-failover.test.ts). Without
        // it, the next reconnection asks the sentinels for the new master.
        sentinelRetryStrategy: (times) => Math.min(times * 100, 1_000),
      });
    } else if (opts.cluster) {
      this.client = new Cluster(opts.cluster.nodes.map(hostPort), {
        lazyConnect: true,
        redisOptions: { ...common, ...auth, lazyConnect: undefined },
        clusterRetryStrategy: (times) => Math.min(times * 100, 1_000),
        maxRedirections: 8,
      });
    } else {
      this.client = new Redis(opts.url!, common);
    }
    this.client.on('error', (err: Error) => {
      this.lastError = err.message;
      if (this.state !== 'up') return;
      this.state = 'down';
      this.opts.log.error({ redis: this.where, error: err.message }, 'session store: Redis is unreachable; requests with a session fail until it is back');
    });
    this.client.on('ready', () => {
      if (this.state !== 'down') return;
      this.state = 'up';
      this.opts.log.info({ redis: this.where }, 'session store: Redis is reachable again');
    });
  }

  async open(): Promise<void> {
    const timeoutMs = this.opts.connectTimeoutMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.client.connect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      // A user whose ACL forbids INFO may still use the store: the check is skipped then.
      const info = await this.client.info('server').catch((err: Error) => (/^NOPERM/.test(err.message) ? '' : Promise.reject(err)));
      const version = /^redis_version:(\d+)\.(\d+)/m.exec(info);
      if (version && Number(version[1]) < 7) throw new Error(`Redis ${version[1]}.${version[2]} is too old: 7.0 or later is required`);
    } catch (err) {
      this.client.disconnect();
      // "Connection is closed." says less than the socket error that caused it.
      const reason = this.lastError && /closed/i.test((err as Error).message) ? this.lastError : (err as Error).message;
      throw new Error(`session store: cannot use Redis at ${this.where}: ${reason}`);
    } finally {
      clearTimeout(timer);
    }
    this.state = 'up';
    await this.refreshHeaderNames();
    this.namesTimer = setInterval(() => void this.refreshHeaderNames().catch(() => undefined), this.opts.headerNamesRefreshMs ?? HEADER_NAMES_REFRESH_MS);
    this.namesTimer.unref();
    this.opts.log.info({ redis: this.where, prefix: this.prefix }, 'session store: Redis connected');
  }

  async close(): Promise<void> {
    if (this.namesTimer) clearInterval(this.namesTimer);
    this.namesTimer = null;
    this.cache.clear();
    if (this.client.status === 'end') return;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const raw = await this.call(() => this.client.get(this.sessionKey(id)));
    if (raw === null) {
      this.cache.delete(id);
      return undefined;
    }
    // The same stored value: the same record object (the stages' per-session caches hit).
    const hit = this.cache.get(id);
    if (hit !== undefined && hit.raw === raw && this.opts.keys.get(hit.record.provider) === hit.key) return hit.record.expiresAt > Date.now() ? hit.record : undefined;
    try {
      const value = JSON.parse(raw) as StoredValue;
      const key = this.opts.keys.get(value.p);
      if (!key) return undefined; // provider removed from config: its sessions go
      const record = unsealRecord(key, id, value.d);
      if (record === undefined || record.expiresAt <= Date.now()) return undefined;
      // Another replica's login: its names are stripped here from now on, not only after the next refresh.
      for (const [n] of record.proxy?.additionalHeaders ?? []) if (!this.names.has(n)) this.names.add(n);
      const limit = this.opts.recordCacheSize ?? RECORD_CACHE_LIMIT;
      if (limit <= 0) return record;
      if (this.cache.size >= limit) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(id, { raw, record, key });
      return record;
    } catch {
      return undefined; // key changed (cookie_secret rotated), corrupted or foreign: no session
    }
  }

  async put(record: SessionRecord): Promise<void> {
    const key = this.opts.keys.get(record.provider);
    if (!key) throw new Error(`no session key for provider ${record.provider}`);
    const ttl = Math.ceil(record.expiresAt - Date.now());
    if (ttl <= 0) return;
    const u = userHashOf(record.userKey);
    const value: StoredValue = { p: record.provider, u, d: sealRecord(key, record) };
    if (record.sid !== undefined) value.s = sidHash(record.provider, record.sid);
    const index = this.indexKey(u);
    if (value.s !== undefined) {
      // The sid index first too, each key in its own transaction (one slot); ended entries go.
      const sidKey = this.sidKey(value.s);
      await this.exec(() =>
        this.client
          .multi()
          .zremrangebyscore(sidKey, '-inf', String(Date.now()))
          .zadd(sidKey, record.expiresAt, record.id)
          .pexpire(sidKey, ttl, 'NX')
          .pexpire(sidKey, ttl, 'GT')
          .exec(),
      );
    }
    // The index first: a session that is stored is always findable by sign-out.
    await this.exec(() =>
      this.client
        .multi()
        .zadd(index, record.createdAt, record.id)
        // A new index has no expiry (NX sets one); an existing one only ever gets a later one (GT).
        .pexpire(index, ttl, 'NX')
        .pexpire(index, ttl, 'GT')
        .zcard(index)
        .exec(),
    ).then(async (results) => {
      await this.call(() => this.client.set(this.sessionKey(record.id), JSON.stringify(value), 'PX', ttl));
      const count = results[3]![1] as number;
      if (this.cap > 0 && count > this.cap) await this.endOldest(index, count - this.cap);
    });
    await this.replicated();
  }

  async delete(id: string): Promise<void> {
    const sessionKey = this.sessionKey(id);
    const raw = await this.call(() => this.client.get(sessionKey));
    await this.call(() => this.client.del(sessionKey));
    this.cache.delete(id);
    await this.unindex(id, raw);
    await this.replicated();
  }

  async deleteUser(userKey: string): Promise<number> {
    const u = userHashOf(userKey);
    const index = this.indexKey(u);
    const legacy = this.legacyUserKey(u);
    const [indexed, older] = await this.call(() => Promise.all([this.client.zrange(index, '0', '-1'), this.client.smembers(legacy)]));
    const ids = [...new Set([...indexed, ...older])];
    if (ids.length === 0) return 0;
    const ended = await this.endSessions(ids);
    // Index entries go after their sessions (ZREM, not DEL: a login meanwhile stays findable).
    await this.call(() => Promise.all([indexed.length > 0 ? this.client.zrem(index, ...indexed) : 0, older.length > 0 ? this.client.srem(legacy, ...older) : 0]));
    await this.replicated();
    return ended;
  }

  async recordHeaderNames(names: readonly string[]): Promise<void> {
    const added = names.filter((n) => !this.names.has(n));
    if (added.length === 0) return;
    await this.call(() => this.client.sadd(this.namesKey(), ...added));
    await this.replicated();
    for (const n of added) this.names.add(n);
  }

  headerNames(): ReadonlySet<string> {
    return this.names;
  }

  /** Adds what other replicas recorded (names are never removed). */
  async refreshHeaderNames(): Promise<void> {
    const all = await this.call(() => this.client.smembers(this.namesKey()));
    for (const n of all) this.names.add(n);
  }

  // --- Logout from the identity provider, and refresh (docs/sessions.md) -----------------------
  // Every command names one key, as everywhere in this store (Cluster-safe without hash tags).

  async deleteBySid(provider: string, sid: string): Promise<number> {
    const sidKey = this.sidKey(sidHash(provider, sid));
    const ids = await this.call(() => this.client.zrange(sidKey, '0', '-1'));
    if (ids.length === 0) return 0;
    const raws = await this.call(() => Promise.all(ids.map((id) => this.client.get(this.sessionKey(id)))));
    const ended = await this.endSessions(ids);
    // Index entries after their sessions, as at sign-out.
    await Promise.all(ids.map((id, i) => this.unindex(id, raws[i] ?? null)));
    await this.call(() => this.client.zrem(sidKey, ...ids));
    await this.replicated();
    return ended;
  }

  async deleteProviderUser(provider: string, userKey: string): Promise<number> {
    const u = userHashOf(userKey);
    const [indexed, older] = await this.call(() => Promise.all([this.client.zrange(this.indexKey(u), '0', '-1'), this.client.smembers(this.legacyUserKey(u))]));
    const ids = [...new Set([...indexed, ...older])];
    if (ids.length === 0) return 0;
    const raws = await this.call(() => Promise.all(ids.map((id) => this.client.get(this.sessionKey(id)))));
    const mine: string[] = [];
    const mineRaw: string[] = [];
    raws.forEach((raw, i) => {
      if (raw !== null && parseStored(raw)?.p === provider) {
        mine.push(ids[i]!);
        mineRaw.push(raw);
      }
    });
    if (mine.length === 0) return 0;
    const ended = await this.endSessions(mine);
    await Promise.all(mine.map((id, i) => this.unindex(id, mineRaw[i]!)));
    await this.replicated();
    return ended;
  }

  async recordOnce(key: string, expiresAt: number): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(expiresAt - Date.now()));
    const set = await this.call(() => this.client.set(`${this.prefix}once:${key}`, '1', 'PX', ttl, 'NX'));
    if (set === 'OK') await this.replicated();
    return set === 'OK';
  }

  async lockRefresh(id: string, ttlMs: number): Promise<string | null> {
    const token = randomBytes(12).toString('base64url');
    const set = await this.call(() => this.client.set(this.lockKey(id), token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX'));
    return set === 'OK' ? token : null;
  }

  async unlockRefresh(id: string, token: string): Promise<void> {
    // Compare and delete in one step: a lock that expired and was taken by another is left alone.
    await this.call(() => this.client.eval(UNLOCK_SCRIPT, 1, this.lockKey(id), token));
  }

  /** Takes an ended session's id out of the indexes its stored value names (user, legacy, sid). */
  private async unindex(id: string, raw: string | null): Promise<void> {
    const value = raw === null ? undefined : parseStored(raw);
    if (value === undefined || typeof value.u !== 'string') return;
    const u = value.u;
    await this.call(() =>
      Promise.all([
        this.client.zrem(this.indexKey(u), id),
        this.client.srem(this.legacyUserKey(u), id),
        typeof value.s === 'string' ? this.client.zrem(this.sidKey(value.s), id) : 0,
      ]),
    );
  }

  private sidKey(hash: string): string {
    return `${this.prefix}sid-sessions:${hash}`;
  }

  private lockKey(id: string): string {
    return `${this.prefix}refresh-lock:${id}`;
  }

  async size(): Promise<number> {
    const match = globEscape(this.prefix) + 'session:*';
    // A cluster's keys are spread over its masters: each is scanned.
    const nodes: (Redis | Cluster)[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    let n = 0;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.call(() => node.scan(cursor, 'MATCH', match, 'COUNT', 1000));
        cursor = next;
        n += keys.length;
      } while (cursor !== '0');
    }
    return n;
  }

  /** Ends the `excess` oldest sessions of one user index (the cap). */
  private async endOldest(index: string, excess: number): Promise<void> {
    const oldest = await this.call(() => this.client.zrange(index, '0', String(excess - 1)));
    if (oldest.length === 0) return;
    const ended = await this.endSessions(oldest);
    await this.call(() => this.client.zrem(index, ...oldest));
    this.opts.log.info({ sessions: ended, cap: this.cap }, 'session cap reached: the oldest sessions of the user were ended');
  }

  /** Deletes sessions, one key per command (they live in different slots of a cluster). */
  private async endSessions(ids: readonly string[]): Promise<number> {
    const results = await this.call(() => Promise.all(ids.map((id) => this.client.del(this.sessionKey(id)))));
    for (const id of ids) this.cache.delete(id);
    return results.reduce((a, b) => a + b, 0);
  }

  /** With wait_replicas: the writes so far are on that many replicas, or the call fails. */
  private async replicated(): Promise<void> {
    if (this.waitReplicas <= 0) return;
    const timeout = Math.max(100, Math.floor((this.opts.commandTimeoutMs ?? 2_000) / 2));
    const acked = (await this.call(() => (this.client as Redis).call('WAIT', String(this.waitReplicas), String(timeout)))) as number;
    if (acked < this.waitReplicas) {
      throw new SessionStoreError(`session store (Redis at ${this.where}): the change reached ${acked} of ${this.waitReplicas} replicas in ${timeout} ms`);
    }
  }

  private sessionKey(id: string): string {
    return `${this.prefix}session:${id}`;
  }

  private namesKey(): string {
    return `${this.prefix}header-names`;
  }

  private indexKey(hash: string): string {
    return `${this.prefix}user-sessions:${hash}`;
  }

  private legacyUserKey(hash: string): string {
    return `${this.prefix}user:${hash}`;
  }

  /** Runs one command; a failure becomes a SessionStoreError (no command arguments in logs). */
  private async call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof SessionStoreError) throw err;
      // EXECABORT says only that a MULTI was discarded; the first queued command's error says why.
      const cause = (err as { previousErrors?: Error[] }).previousErrors?.[0] ?? (err as Error);
      throw new SessionStoreError(`session store (Redis at ${this.where}): ${cause.message}`);
    }
  }

  /** Runs a MULTI; an aborted transaction or a failed command inside it is an error too. */
  private async exec(run: () => Promise<[Error | null, unknown][] | null>): Promise<[Error | null, unknown][]> {
    const results = await this.call(run);
    if (results === null) throw new SessionStoreError(`session store (Redis at ${this.where}): transaction aborted`);
    for (const [err] of results) if (err) throw new SessionStoreError(`session store (Redis at ${this.where}): ${err.message}`);
    return results;
  }
}
