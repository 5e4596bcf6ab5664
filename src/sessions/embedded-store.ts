// The embedded session store: sessions in an SQLite database on disk (better-sqlite3, WAL), so
// that a restart keeps them, deleted ones stay deleted, and several processes on one machine can
// share the file.
//
// Reads run on the event loop with prepared statements (a WAL read never waits for a writer):
// every get() asks SQLite whether any connection committed since (PRAGMA data_version) and, if
// one did, reads the row, so a session ended by any process is refused by every process from
// the moment that deletion committed. What is cached per process is the decrypted record of a
// row version (id + seq, which is never reused), which saves the decryption, and the read while
// nothing was committed.
// Writes run on a writer thread (sqlite-writer.ts): each is one transaction, fsynced before its
// promise resolves, so a login or sign-out is durable before it is answered, and the fsync does
// not stall other requests. A write that fails (disk full, read-only, locked) changes nothing
// and rejects with SessionStoreError.
//
// Rows are sealed per provider (sealed.ts): a copy of the file alone reveals no claim or token.
// Expired rows are swept every minute and freed pages returned, so the file stays the size of
// what is live. A journal file of the older store (`sessions.jsonl`) is migrated on first start.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  DEFAULT_MAX_SESSIONS_PER_USER,
  HEADER_NAMES_REFRESH_MS,
  SessionStoreError,
  userHashOf,
  type SessionRecord,
  type SessionStore,
} from './store.js';
import { sealRecord, unsealRecord } from './sealed.js';
import { replayJournal } from './journal.js';
import {
  describeSqliteError,
  ensureSchema,
  openSessionDatabase,
  runWrite,
  SessionWrites,
  type SessionRow,
  type SqliteDatabase,
  type WriteOp,
} from './sqlite-ops.js';
import type { WriterData, WriterReply } from './sqlite-writer.js';
import type { Logger } from '../pipeline/logger.js';

export const DEFAULT_EMBEDDED_PATH = '.portcullis/sessions.db';

export interface EmbeddedStoreOptions {
  /**
   * Database path; null keeps sessions in memory only (tests, benchmarks). A path ending in
   * `.jsonl` (a journal of the older store, as old configs name it) means the database next to
   * it, `<name>.db`, into which the journal is migrated.
   */
  path: string | null;
  /** Encryption key of each provider, by provider name. */
  keys: ReadonlyMap<string, Buffer>;
  log: Logger;
  /** Live sessions kept per user; beyond it the oldest is ended (0: no cap). */
  maxSessionsPerUser?: number;
  /** How often expired sessions are dropped. */
  sweepIntervalMs?: number;
  /** How long a write waits for another process's write lock (default 5 s). */
  busyTimeoutMs?: number;
  /** How often the additionalHeaders names other processes recorded are re-read (default HEADER_NAMES_REFRESH_MS). */
  headerNamesRefreshMs?: number;
  /** Decrypted records kept (default 10 000; 0: none — benchmarks of the uncached path). */
  recordCacheSize?: number;
  /** Tests only: limits the writer's database size in pages, to simulate a full disk. */
  maxPageCount?: number;
}

/** Decrypted records kept per process (by row version); beyond it the oldest entry goes. */
const RECORD_CACHE_LIMIT = 10_000;

interface CachedRecord {
  seq: number;
  expiresAt: number;
  /** The store's change count when the row was last read (see `changeCount`). */
  checked: number;
  record: SessionRecord;
  /** The key it was decrypted with: a reload that changes the provider's key drops it. */
  key: Buffer;
}

function sidHashOf(provider: string, sid: string): string {
  return createHash('sha256').update(`${provider}\u0000${sid}`).digest('hex');
}

/** Where the database and the journal to migrate are, for a configured path. */
export function embeddedPaths(configured: string): { database: string; journal: string } {
  if (configured.endsWith('.jsonl')) return { database: configured.slice(0, -'.jsonl'.length) + '.db', journal: configured };
  const name = basename(configured);
  const stem = name.includes('.') ? name.slice(0, name.lastIndexOf('.')) : name;
  return { database: configured, journal: join(dirname(configured), stem + '.jsonl') };
}

export class EmbeddedSessionStore implements SessionStore {
  private db: SqliteDatabase | null = null;
  private writer: Writer | null = null;
  private readonly cache = new Map<string, CachedRecord>();
  private readonly memoryKeys = new Map<string, Buffer>();
  private readonly names = new Set<string>();
  private namesTimer: NodeJS.Timeout | null = null;
  private readNames!: () => unknown[];
  private readonly cap: number;
  private readonly where: string;
  private sweeper: NodeJS.Timeout | null = null;
  private readVersion!: (id: string) => unknown[] | undefined;
  /**
   * Changes whenever a write has been committed since the last call — by this process's writer
   * thread, another worker or another process on the file (SQLite's `PRAGMA data_version`, which
   * counts commits of other connections); in memory, where the one connection writes itself, the
   * count of this store's writes. While it stands still, a row read before is still the row: the
   * pragma costs about half of the row-version read it spares (benchmarks/stages: store).
   */
  private changeCount!: () => number;
  private localWrites = 0;
  private readRow!: (id: string) => unknown[] | undefined;
  private countLive!: (now: number) => unknown;

  constructor(private readonly opts: EmbeddedStoreOptions) {
    this.cap = opts.maxSessionsPerUser ?? DEFAULT_MAX_SESSIONS_PER_USER;
    this.where = opts.path === null ? 'memory' : embeddedPaths(opts.path).database;
  }

  async open(): Promise<void> {
    const busyTimeoutMs = this.opts.busyTimeoutMs ?? 5_000;
    let db: SqliteDatabase;
    if (this.opts.path === null) {
      db = openSessionDatabase(':memory:', { busyTimeoutMs });
      ensureSchema(db);
      this.writer = new SameThreadWriter(new SessionWrites(openAlias(db, this.opts.maxPageCount)));
    } else {
      const { database, journal } = embeddedPaths(this.opts.path);
      if (database !== this.opts.path) {
        this.opts.log.warn({ configured: this.opts.path, database }, 'session_store.path names a journal file: sessions are kept in the SQLite database next to it; set path to the database');
      }
      try {
        mkdirSync(dirname(database), { recursive: true, mode: 0o700 });
        // Created 0600 before SQLite opens it (SQLite gives the -wal and -shm files the same mode).
        closeSync(openSync(database, 'a', 0o600));
        chmodSync(database, 0o600);
        db = openSessionDatabase(database, { busyTimeoutMs });
        ensureSchema(db);
        this.migrate(db, journal);
      } catch (err) {
        throw new Error(`session store: cannot use the SQLite database ${database}: ${describeSqliteError(err as Error)}`);
      }
      this.writer = new ThreadWriter({ path: database, busyTimeoutMs, maxPageCount: this.opts.maxPageCount }, this.where);
    }
    // Reads only from here on: every write goes through the writer (in memory: the same connection).
    if (this.opts.path !== null) db.pragma('query_only = 1');
    // A read waits briefly at most (a WAL read waits only while a checkpoint resets the log).
    db.pragma('busy_timeout = 250');
    const version = db.prepare('SELECT seq, expires_at FROM sessions WHERE id = ?').raw();
    const row = db.prepare('SELECT seq, expires_at, provider, data FROM sessions WHERE id = ?').raw();
    const count = db.prepare('SELECT count(*) FROM sessions WHERE expires_at > ?').pluck();
    this.readVersion = (id) => version.get(id) as unknown[] | undefined;
    if (this.opts.path === null) this.changeCount = () => this.localWrites;
    else {
      const dataVersion = db.prepare('PRAGMA data_version').pluck();
      this.changeCount = () => dataVersion.get() as number;
    }
    this.readRow = (id) => row.get(id) as unknown[] | undefined;
    this.countLive = (now) => count.get(now);
    const names = db.prepare('SELECT name FROM header_names').pluck();
    this.readNames = () => names.all();
    this.db = db;
    this.refreshHeaderNames();
    this.namesTimer = setInterval(() => this.refreshHeaderNames(), this.opts.headerNamesRefreshMs ?? HEADER_NAMES_REFRESH_MS);
    this.namesTimer.unref();
    if (this.opts.path !== null) this.opts.log.info({ path: this.where, sessions: this.size() }, 'session database opened');
    this.sweeper = setInterval(() => void this.sweep(), this.opts.sweepIntervalMs ?? 60_000);
    this.sweeper.unref();
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    if (this.namesTimer) clearInterval(this.namesTimer);
    this.namesTimer = null;
    await this.writer?.close();
    this.writer = null;
    this.db?.close();
    this.db = null;
    this.cache.clear();
  }

  get(id: string): SessionRecord | undefined {
    const db = this.db;
    if (db === null) throw new SessionStoreError('session store: not open');
    const hit = this.cache.get(id);
    // A cached record decrypted with another key (a reload changed it) is read again.
    const usable = hit !== undefined && this.keyOf(hit.record.provider) === hit.key;
    let changes: number;
    let version;
    try {
      changes = this.changeCount();
      if (usable && hit.checked === changes) return hit.expiresAt > Date.now() ? hit.record : undefined;
      version = this.readVersion(id);
    } catch (err) {
      throw this.failure(err);
    }
    if (version === undefined) {
      this.cache.delete(id);
      return undefined;
    }
    const [seq, expiresAt] = version as [number, number];
    if (expiresAt <= Date.now()) return undefined;
    if (usable && hit.seq === seq) {
      hit.checked = changes;
      hit.expiresAt = expiresAt;
      return hit.record;
    }
    return this.load(id, changes);
  }

  async put(record: SessionRecord): Promise<void> {
    const key = this.keyOf(record.provider);
    if (!key) throw new Error(`no session key for provider ${record.provider}`);
    const row: SessionRow = {
      id: record.id,
      provider: record.provider,
      userHash: userHashOf(record.userKey),
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
      data: sealRecord(key, record),
      sidHash: record.sid === undefined ? null : sidHashOf(record.provider, record.sid),
    };
    const ended = await this.write({ op: 'put', args: [row, this.cap, Date.now()] });
    if (ended > 0) this.opts.log.info({ sessions: ended, cap: this.cap }, 'session cap reached: the oldest sessions of the user were ended');
  }

  async delete(id: string): Promise<void> {
    await this.write({ op: 'deleteIds', args: [[id]] });
    this.cache.delete(id);
  }

  async deleteUser(userKey: string): Promise<number> {
    return this.write({ op: 'deleteUser', args: [userHashOf(userKey), Date.now()] });
  }

  size(): number {
    if (this.db === null) return 0;
    try {
      return this.countLive(Date.now()) as number;
    } catch (err) {
      throw this.failure(err);
    }
  }

  // --- Logout from the identity provider, and refresh: in the database, so every process sharing it agrees.

  async deleteBySid(provider: string, sid: string): Promise<number> {
    return this.write({ op: 'deleteBySid', args: [provider, sidHashOf(provider, sid), Date.now()] });
  }

  async deleteProviderUser(provider: string, userKey: string): Promise<number> {
    return this.write({ op: 'deleteProviderUser', args: [provider, userHashOf(userKey), Date.now()] });
  }

  async recordOnce(key: string, expiresAt: number): Promise<boolean> {
    return (await this.write({ op: 'recordOnce', args: [key, expiresAt, Date.now()] })) === 1;
  }

  async lockRefresh(id: string, ttlMs: number): Promise<string | null> {
    const token = randomBytes(12).toString('base64url');
    const now = Date.now();
    return (await this.write({ op: 'lockRefresh', args: [id, token, now + ttlMs, now] })) === 1 ? token : null;
  }

  async unlockRefresh(id: string, token: string): Promise<void> {
    await this.write({ op: 'unlockRefresh', args: [id, token] });
  }

  async recordHeaderNames(names: readonly string[]): Promise<void> {
    const added = names.filter((n) => !this.names.has(n));
    if (added.length === 0) return;
    await this.write({ op: 'addHeaderNames', args: [added] });
    for (const n of added) this.names.add(n);
  }

  headerNames(): ReadonlySet<string> {
    return this.names;
  }

  /** Adds the names other processes recorded (names are never removed). */
  refreshHeaderNames(): void {
    if (this.db === null) return;
    try {
      for (const n of this.readNames()) this.names.add(n as string);
    } catch (err) {
      this.opts.log.warn({ error: describeSqliteError(err as Error) }, 'additionalHeaders names could not be re-read');
    }
  }

  /** Drops expired rows now (also run every sweepIntervalMs). */
  async sweep(): Promise<number> {
    try {
      return await this.write({ op: 'sweep', args: [Date.now()] });
    } catch (err) {
      this.opts.log.warn({ error: (err as Error).message }, 'expired sessions could not be swept');
      return 0;
    }
  }

  private load(id: string, changes: number): SessionRecord | undefined {
    let row;
    try {
      row = this.readRow(id);
    } catch (err) {
      throw this.failure(err);
    }
    if (row === undefined) return undefined;
    const [seq, expiresAt, provider, data] = row as [number, number, string, string];
    if (expiresAt <= Date.now()) return undefined;
    const key = this.keyOf(provider);
    if (!key) return undefined; // provider removed from config: its sessions go
    let record: SessionRecord | undefined;
    try {
      record = unsealRecord(key, id, data);
    } catch {
      return undefined; // key changed (cookie_secret rotated) or corrupted: no session
    }
    if (record === undefined) return undefined;
    const limit = this.opts.recordCacheSize ?? RECORD_CACHE_LIMIT;
    // Another process's login: its names are stripped here from now on, not only after the next refresh.
    for (const [n] of record.proxy?.additionalHeaders ?? []) if (!this.names.has(n)) this.names.add(n);
    if (limit <= 0) return record;
    if (this.cache.size >= limit) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(id, { seq, expiresAt, checked: changes, record, key });
    return record;
  }

  /** The provider's key; in memory, a provider without one gets a random key (nothing leaves the process). */
  private keyOf(provider: string): Buffer | undefined {
    const key = this.opts.keys.get(provider);
    if (key !== undefined || this.opts.path !== null) return key;
    let own = this.memoryKeys.get(provider);
    if (own === undefined) this.memoryKeys.set(provider, (own = randomBytes(32)));
    return own;
  }

  private async write(w: WriteOp): Promise<number> {
    const writer = this.writer;
    if (writer === null) throw new SessionStoreError('session store: not open');
    const done = writer.run(w);
    // In memory the write has happened by now (the same connection, synchronously).
    this.localWrites++;
    return done;
  }

  private failure(err: unknown): SessionStoreError {
    return new SessionStoreError(`session store (SQLite at ${this.where}): ${describeSqliteError(err as Error)}`);
  }

  /**
   * Imports the journal of the older store, once: the import and a marker naming the journal
   * commit together, and the journal is removed afterwards. A start that finds the marker (a
   * crash before the removal, or another process that migrated first) only removes the journal,
   * so a session signed out after the migration never comes back from it.
   */
  private migrate(db: SqliteDatabase, journal: string): void {
    if (!existsSync(journal)) return;
    const text = readFileSync(journal, 'utf8');
    const marker = `migrated-journal:${createHash('sha256').update(text).digest('hex')}`;
    const { live, headerNames, unreadable } = replayJournal(text, this.opts.keys, Date.now());
    const rows: SessionRow[] = live.map(({ record, sealed }) => ({
      id: record.id,
      provider: record.provider,
      userHash: userHashOf(record.userKey),
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
      data: sealed,
      sidHash: record.sid === undefined ? null : sidHashOf(record.provider, record.sid),
    }));
    const imported = new SessionWrites(db).importOnce(marker, rows, headerNames);
    unlinkSync(journal);
    if (imported >= 0) this.opts.log.info({ journal, sessions: imported, unreadable }, 'session journal migrated to the SQLite database and removed');
  }
}

/** For the in-memory store: a second handle on the same connection that may apply a page limit. */
function openAlias(db: SqliteDatabase, maxPageCount: number | undefined): SqliteDatabase {
  if (maxPageCount !== undefined) db.pragma(`max_page_count = ${Math.floor(maxPageCount)}`);
  return db;
}

interface Writer {
  run(w: WriteOp): Promise<number>;
  close(): Promise<void>;
}

/** In-memory databases are written on the event loop (nothing to fsync). */
class SameThreadWriter implements Writer {
  constructor(private readonly writes: SessionWrites) {}
  async run(w: WriteOp): Promise<number> {
    try {
      return runWrite(this.writes, w);
    } catch (err) {
      throw new SessionStoreError(`session store (SQLite in memory): ${describeSqliteError(err as Error)}`);
    }
  }
  async close(): Promise<void> {}
}

/**
 * The writer thread's client. Started on first use, restarted after a crash (the calls in flight
 * then reject: their outcome is unknown to the caller, so they answer as failed). Referenced only
 * while a call is in flight, so an idle store never keeps the process alive.
 */
class ThreadWriter implements Writer {
  private worker: Worker | null = null;
  private next = 1;
  private readonly pending = new Map<number, { resolve: (n: number) => void; reject: (e: Error) => void }>();

  constructor(
    private readonly data: WriterData,
    private readonly where: string,
  ) {}

  run(w: WriteOp): Promise<number> {
    const worker = this.worker ?? this.start();
    const n = this.next++;
    return new Promise<number>((resolve, reject) => {
      this.pending.set(n, { resolve, reject });
      worker.ref();
      worker.postMessage({ n, ...w });
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    if (worker === null) return;
    const n = this.next++;
    const closed = new Promise<void>((resolve) => {
      this.pending.set(n, { resolve: () => resolve(), reject: () => resolve() });
      worker.once('exit', () => resolve());
    });
    worker.ref();
    worker.postMessage({ n, close: true });
    await closed;
    this.worker = null;
    await worker.terminate();
  }

  private start(): Worker {
    // Under tsx (tests, development) the thread loads the TypeScript module through tsx's loader.
    const ts = import.meta.url.endsWith('.ts');
    const module = new URL(ts ? './sqlite-writer.ts' : './sqlite-writer.js', import.meta.url).href;
    const loader = ts ? import.meta.resolve('tsx/esm/api') : null;
    const boot =
      "const { workerData } = require('node:worker_threads');" +
      '(async () => { if (workerData.loader) (await import(workerData.loader)).register(); await import(workerData.module); })();';
    const worker = new Worker(boot, { eval: true, workerData: { ...this.data, module, loader }, name: 'portcullis-sessions-writer' });
    worker.unref();
    worker.on('message', (m: WriterReply) => {
      if ('fatal' in m) return this.fail(worker, m.fatal);
      const call = this.pending.get(m.n);
      if (call === undefined) return;
      this.pending.delete(m.n);
      if (this.pending.size === 0) worker.unref();
      if ('ok' in m) call.resolve(m.ok);
      else call.reject(new SessionStoreError(`session store (SQLite at ${this.where}): ${describeSqliteError(m.error)}`));
    });
    worker.on('error', (err) => this.fail(worker, { code: '', message: err.message }));
    worker.on('exit', () => this.fail(worker, { code: '', message: 'the writer thread stopped' }));
    this.worker = worker;
    return worker;
  }

  private fail(worker: Worker, error: { code: string; message: string }): void {
    if (this.worker === worker) this.worker = null;
    const err = new SessionStoreError(`session store (SQLite at ${this.where}): ${describeSqliteError(error)}`);
    for (const call of this.pending.values()) call.reject(err);
    this.pending.clear();
  }
}
