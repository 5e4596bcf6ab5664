// The shared session store: sessions in Redis, so that several outpost replicas share logins and
// a restart loses nothing.
//
// Keys, under a configurable prefix (default `portcullis:`):
//   <prefix>session:<id>           → `{"p":provider,"u":sha256(userKey),"d":sealed record}`, PX = time
//                                    left until expiresAt. `d` is sealed exactly like the embedded
//                                    journal (AES-256-GCM, the provider's key, the id as AAD), so a
//                                    copy of the database reveals no claims or tokens.
//   <prefix>user:<sha256(userKey)> → SET of the user's session ids; its expiry is extended to the
//                                    longest session, so sign-out always finds every live session.
//   <prefix>header-names           → SET of the additionalHeaders names seen at any login (lower
//                                    case, no expiry): every replica strips them from requests. Each
//                                    replica re-reads it every HEADER_NAMES_REFRESH_MS and learns a
//                                    name at once from a session it loads.
//
// A Redis outage makes store calls reject quickly (small retry budget, command timeout); the auth
// stage treats a rejection as "no session, store unavailable": allowlisted paths are served
// anonymously, everything else answers 503 — a request is never let through without its session.
// Requires Redis 7.0 or later (PEXPIRE … NX / GT).
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { HEADER_NAMES_REFRESH_MS, SessionStoreError, type SessionRecord, type SessionStore } from './store.js';
import { sealRecord, unsealRecord } from './sealed.js';
import type { Logger } from '../pipeline/logger.js';

export const DEFAULT_KEY_PREFIX = 'portcullis:';

export interface RedisStoreOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS). */
  url: string;
  /** Prefix of every key (default `portcullis:`). */
  keyPrefix?: string;
  /** Encryption key of each provider, by provider name. */
  keys: ReadonlyMap<string, Buffer>;
  log: Logger;
  /** How long open() waits for Redis (default 5 s). */
  connectTimeoutMs?: number;
  /** How long one command may take before it fails (default 2 s). */
  commandTimeoutMs?: number;
  /** How often the header-names set is re-read (default HEADER_NAMES_REFRESH_MS). */
  headerNamesRefreshMs?: number;
}

interface StoredValue {
  /** Provider name: selects the key. */
  p: string;
  /** sha256 of the user key: the user set the id belongs to. */
  u: string;
  /** The sealed record. */
  d: string;
}

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

function userHash(userKey: string): string {
  return createHash('sha256').update(userKey).digest('hex');
}

/** Escapes glob characters for SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

export class RedisSessionStore implements SessionStore {
  private readonly client: Redis;
  private readonly prefix: string;
  private readonly where: string;
  /** 'down' while Redis is unreachable after open() (one log line per outage and recovery). */
  private state: 'opening' | 'up' | 'down' = 'opening';
  private lastError = '';
  private readonly names = new Set<string>();
  private namesTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: RedisStoreOptions) {
    this.prefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.where = redactRedisUrl(opts.url);
    this.client = new Redis(opts.url, {
      lazyConnect: true,
      connectTimeout: opts.connectTimeoutMs ?? 5_000,
      commandTimeout: opts.commandTimeoutMs ?? 2_000,
      // During an outage a queued command fails after two reconnection attempts (≤ ~0.5 s while
      // connections are refused) or after commandTimeout (a host that does not answer at all).
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(times * 50, 250),
      connectionName: 'portcullis',
    });
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
    if (this.client.status === 'end') return;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const raw = await this.call(() => this.client.get(this.sessionKey(id)));
    if (raw === null) return undefined;
    try {
      const value = JSON.parse(raw) as StoredValue;
      const key = this.opts.keys.get(value.p);
      if (!key) return undefined; // provider removed from config: its sessions go
      const record = unsealRecord(key, id, value.d);
      if (record === undefined || record.expiresAt <= Date.now()) return undefined;
      // Another replica's login: its names are stripped here from now on, not only after the next refresh.
      for (const [n] of record.proxy?.additionalHeaders ?? []) if (!this.names.has(n)) this.names.add(n);
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
    const u = userHash(record.userKey);
    const value: StoredValue = { p: record.provider, u, d: sealRecord(key, record) };
    const userKey = this.userKey(u);
    await this.exec(() =>
      this.client
        .multi()
        .set(this.sessionKey(record.id), JSON.stringify(value), 'PX', ttl)
        .sadd(userKey, record.id)
        // A new set has no expiry (NX sets one); an existing one only ever gets a later one (GT).
        .pexpire(userKey, ttl, 'NX')
        .pexpire(userKey, ttl, 'GT')
        .exec(),
    );
  }

  async delete(id: string): Promise<void> {
    const sessionKey = this.sessionKey(id);
    const raw = await this.call(() => this.client.get(sessionKey));
    let u: string | undefined;
    try {
      u = raw === null ? undefined : (JSON.parse(raw) as StoredValue).u;
    } catch {
      u = undefined;
    }
    const multi = this.client.multi().del(sessionKey);
    if (typeof u === 'string') multi.srem(this.userKey(u), id);
    await this.exec(() => multi.exec());
  }

  async deleteUser(userKey: string): Promise<number> {
    const setKey = this.userKey(userHash(userKey));
    const ids = await this.call(() => this.client.smembers(setKey));
    if (ids.length === 0) return 0;
    // SREM (not DEL) of the set: a session created meanwhile stays findable by the next sign-out.
    const multi = this.client.multi();
    for (const id of ids) multi.del(this.sessionKey(id));
    multi.srem(setKey, ...ids);
    const results = await this.exec(() => multi.exec());
    let ended = 0;
    for (let i = 0; i < ids.length; i++) if (results[i]?.[1] === 1) ended++;
    return ended;
  }

  async recordHeaderNames(names: readonly string[]): Promise<void> {
    const added = names.filter((n) => !this.names.has(n));
    if (added.length === 0) return;
    await this.call(() => this.client.sadd(this.namesKey(), ...added));
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

  async size(): Promise<number> {
    const match = globEscape(this.prefix) + 'session:*';
    let cursor = '0';
    let n = 0;
    do {
      const [next, keys] = await this.call(() => this.client.scan(cursor, 'MATCH', match, 'COUNT', 1000));
      cursor = next;
      n += keys.length;
    } while (cursor !== '0');
    return n;
  }

  private sessionKey(id: string): string {
    return `${this.prefix}session:${id}`;
  }

  private namesKey(): string {
    return `${this.prefix}header-names`;
  }

  private userKey(hash: string): string {
    return `${this.prefix}user:${hash}`;
  }

  /** Runs one command; a failure becomes a SessionStoreError (no command arguments in logs). */
  private async call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw new SessionStoreError(`session store (Redis at ${this.where}): ${(err as Error).message}`);
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
