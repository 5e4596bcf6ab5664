// The embedded store's database: schema, connection settings and the writes, shared by the
// writer thread (sqlite-writer.ts) and the in-memory store that tests and benchmarks use.
//
// One row per session. Only what finding and expiring rows needs is in clear: the session id
// (the cookie carries it encrypted with the provider's cookie key), the provider name, sha256 of
// the user key, and the times. Claims and tokens are in `data`, sealed exactly like Redis values
// (sealed.ts: AES-256-GCM with the provider's key, the id as additional data).
//
// `seq` is AUTOINCREMENT, so it is never reused: (id, seq) names one immutable version of a row,
// and readers may keep the decrypted record of a version as long as they find that seq again.
import Database from 'better-sqlite3';

export type SqliteDatabase = Database.Database;

/** A session as stored. */
export interface SessionRow {
  id: string;
  provider: string;
  userHash: string;
  createdAt: number;
  expiresAt: number;
  /** The sealed record. */
  data: string;
  /** sha256 of provider + IdP sid (logout by sid), or null. */
  sidHash: string | null;
}

export interface DatabaseOptions {
  /** How long a write waits for another process's write lock before failing. */
  busyTimeoutMs: number;
  /** Tests: a tiny page limit makes writes fail with SQLITE_FULL, as on a full disk. */
  maxPageCount?: number;
  readonly?: boolean;
}

const SCHEMA_VERSION = 2;

/** Opens the database with the settings every connection needs (WAL, full sync on commit). */
export function openSessionDatabase(path: string, opts: DatabaseOptions): SqliteDatabase {
  const db = new Database(path, { fileMustExist: path !== ':memory:' && opts.readonly === true });
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs))}`);
  if (path !== ':memory:') {
    // WAL: readers (every request) never wait for the writer, and several processes share the
    // file. synchronous=FULL: a commit is on disk (WAL fsynced) before the call returns, so an
    // answered login or sign-out survives a crash or power loss.
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`the database could not be switched to WAL mode (it is in ${String(mode)} mode)`);
    db.pragma('synchronous = FULL');
    // The WAL is truncated to this after a checkpoint; the database file reuses freed pages.
    db.pragma('journal_size_limit = 4194304');
  }
  if (opts.maxPageCount !== undefined) db.pragma(`max_page_count = ${Math.floor(opts.maxPageCount)}`);
  return db;
}

/** Creates the tables (idempotent; in one write transaction, so that processes starting at once agree). */
export function ensureSchema(db: SqliteDatabase): void {
  // auto_vacuum only takes effect before the first table exists: freed pages can then be returned.
  if ((db.pragma('page_count', { simple: true }) as number) <= 1) db.pragma('auto_vacuum = INCREMENTAL');
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`the session database was written by a newer Portcullis (schema ${version})`);
    db.exec(`
      CREATE TABLE IF NOT EXISTS sessions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        provider TEXT NOT NULL,
        user_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        data TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_hash, created_at);
      CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS header_names (name TEXT PRIMARY KEY) WITHOUT ROWID;
    `);
    // Schema 2: logout from the IdP (sessions by sid), replay records, refresh locks.
    const columns = (db.prepare('PRAGMA table_info(sessions)').all() as { name: string }[]).map((c) => c.name);
    if (!columns.includes('sid_hash')) db.exec('ALTER TABLE sessions ADD COLUMN sid_hash TEXT');
    db.exec(`
      CREATE INDEX IF NOT EXISTS sessions_by_sid ON sessions (sid_hash) WHERE sid_hash IS NOT NULL;
      CREATE TABLE IF NOT EXISTS once_keys (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS refresh_locks (id TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    `);
    if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

/** Every change to the sessions table. Each method is one transaction, durable when it returns. */
export class SessionWrites {
  private readonly insert;
  private readonly dropExpiredOfUser;
  private readonly dropBeyondCap;
  private readonly dropId;
  private readonly dropUser;
  private readonly dropExpired;
  private readonly freePages;
  private readonly getMeta;
  private readonly setMeta;
  private readonly addName;
  private readonly dropSid;
  private readonly dropProviderUser;
  private readonly dropOnceExpired;
  private readonly addOnce;
  private readonly dropLockExpired;
  private readonly addLock;
  private readonly dropLock;
  private readonly sweepOnce;
  private readonly sweepLocks;

  constructor(private readonly db: SqliteDatabase) {
    // REPLACE gives a replaced session a new seq: readers see a new version.
    this.insert = db.prepare(
      'INSERT OR REPLACE INTO sessions (id, provider, user_hash, created_at, expires_at, data, sid_hash) VALUES (@id, @provider, @userHash, @createdAt, @expiresAt, @data, @sidHash)',
    );
    this.dropExpiredOfUser = db.prepare('DELETE FROM sessions WHERE user_hash = ? AND expires_at <= ?');
    // Everything after the `cap` newest sessions of the user.
    this.dropBeyondCap = db.prepare(
      'DELETE FROM sessions WHERE seq IN (SELECT seq FROM sessions WHERE user_hash = ? ORDER BY created_at DESC, seq DESC LIMIT -1 OFFSET ?)',
    );
    this.dropId = db.prepare('DELETE FROM sessions WHERE id = ?');
    this.dropUser = db.prepare('DELETE FROM sessions WHERE user_hash = ? RETURNING expires_at').pluck();
    this.dropExpired = db.prepare('DELETE FROM sessions WHERE expires_at <= ?');
    this.freePages = db.prepare('PRAGMA freelist_count').pluck();
    this.getMeta = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
    this.setMeta = db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
    this.addName = db.prepare('INSERT OR IGNORE INTO header_names (name) VALUES (?)');
    this.dropSid = db.prepare('DELETE FROM sessions WHERE sid_hash = ? AND provider = ? RETURNING expires_at').pluck();
    this.dropProviderUser = db.prepare('DELETE FROM sessions WHERE user_hash = ? AND provider = ? RETURNING expires_at').pluck();
    this.dropOnceExpired = db.prepare('DELETE FROM once_keys WHERE key = ? AND expires_at <= ?');
    this.addOnce = db.prepare('INSERT OR IGNORE INTO once_keys (key, expires_at) VALUES (?, ?)');
    this.dropLockExpired = db.prepare('DELETE FROM refresh_locks WHERE id = ? AND expires_at <= ?');
    this.addLock = db.prepare('INSERT OR IGNORE INTO refresh_locks (id, token, expires_at) VALUES (?, ?, ?)');
    this.dropLock = db.prepare('DELETE FROM refresh_locks WHERE id = ? AND token = ?');
    this.sweepOnce = db.prepare('DELETE FROM once_keys WHERE expires_at <= ?');
    this.sweepLocks = db.prepare('DELETE FROM refresh_locks WHERE expires_at <= ?');
  }

  // --- Logout from the identity provider, and refresh -----------------------------------------

  /** Ends the provider's sessions of one IdP sid; returns how many of them were live. */
  deleteBySid(provider: string, sidHash: string, now: number): number {
    return this.db.transaction(() => (this.dropSid.all(sidHash, provider) as number[]).filter((x) => x > now).length).immediate();
  }

  /** Ends the provider's sessions of one user; returns how many of them were live. */
  deleteProviderUser(provider: string, userHash: string, now: number): number {
    return this.db.transaction(() => (this.dropProviderUser.all(userHash, provider) as number[]).filter((x) => x > now).length).immediate();
  }

  /** 1 when `key` was not recorded (now it is, until expiresAt), 0 while it is. */
  recordOnce(key: string, expiresAt: number, now: number): number {
    return this.db
      .transaction(() => {
        this.dropOnceExpired.run(key, now);
        return this.addOnce.run(key, expiresAt).changes;
      })
      .immediate();
  }

  /** 1 when the refresh lock of `id` was taken for `token` until `until`, 0 when another holds it. */
  lockRefresh(id: string, token: string, until: number, now: number): number {
    return this.db
      .transaction(() => {
        this.dropLockExpired.run(id, now);
        return this.addLock.run(id, token, until).changes;
      })
      .immediate();
  }

  /** Releases the lock if `token` holds it. */
  unlockRefresh(id: string, token: string): number {
    return this.dropLock.run(id, token).changes;
  }

  /** Records additionalHeaders names (they are never removed); returns how many were new. */
  addHeaderNames(names: readonly string[]): number {
    return this.db
      .transaction(() => {
        let n = 0;
        for (const name of names) n += this.addName.run(name).changes;
        return n;
      })
      .immediate();
  }

  /** Stores a session; ends the user's oldest beyond `cap` (0: no cap). Returns how many were ended. */
  put(row: SessionRow, cap: number, now: number): number {
    return this.db
      .transaction(() => {
        this.insert.run(row);
        if (cap <= 0) return 0;
        this.dropExpiredOfUser.run(row.userHash, now);
        return this.dropBeyondCap.run(row.userHash, cap).changes;
      })
      .immediate();
  }

  /** Ends these sessions; returns how many existed. */
  deleteIds(ids: readonly string[]): number {
    return this.db
      .transaction(() => {
        let n = 0;
        for (const id of ids) n += this.dropId.run(id).changes;
        return n;
      })
      .immediate();
  }

  /** Ends every session of a user; returns how many of them were live. */
  deleteUser(userHash: string, now: number): number {
    return this.db
      .transaction(() => (this.dropUser.all(userHash) as number[]).filter((x) => x > now).length)
      .immediate();
  }

  /** Drops expired rows and returns freed pages to the file system; returns how many rows went. */
  sweep(now: number): number {
    const n = this.dropExpired.run(now).changes;
    this.sweepOnce.run(now);
    this.sweepLocks.run(now);
    if ((this.freePages.get() as number) > 256) this.db.pragma('incremental_vacuum');
    return n;
  }

  /**
   * Imports rows once per `marker` (a journal being migrated): when the marker is already
   * recorded, nothing is imported — a session deleted since the first import must not come back.
   * Returns how many rows were imported, or -1 when the marker was already there.
   */
  importOnce(marker: string, rows: readonly SessionRow[], headerNames: readonly string[]): number {
    return this.db
      .transaction(() => {
        if (this.getMeta.get(marker) !== undefined) return -1;
        for (const row of rows) this.insert.run(row);
        for (const name of headerNames) this.addName.run(name);
        this.setMeta.run(marker, new Date().toISOString());
        return rows.length;
      })
      .immediate();
  }
}

/** The writes a writer thread runs, by name (the messages it accepts). */
export type WriteOp =
  | { op: 'put'; args: [SessionRow, number, number] }
  | { op: 'deleteIds'; args: [string[]] }
  | { op: 'deleteUser'; args: [string, number] }
  | { op: 'sweep'; args: [number] }
  | { op: 'addHeaderNames'; args: [string[]] }
  | { op: 'deleteBySid'; args: [string, string, number] }
  | { op: 'deleteProviderUser'; args: [string, string, number] }
  | { op: 'recordOnce'; args: [string, number, number] }
  | { op: 'lockRefresh'; args: [string, string, number, number] }
  | { op: 'unlockRefresh'; args: [string, string] };

export function runWrite(writes: SessionWrites, w: WriteOp): number {
  switch (w.op) {
    case 'put':
      return writes.put(...w.args);
    case 'deleteIds':
      return writes.deleteIds(w.args[0]);
    case 'deleteUser':
      return writes.deleteUser(...w.args);
    case 'sweep':
      return writes.sweep(w.args[0]);
    case 'addHeaderNames':
      return writes.addHeaderNames(w.args[0]);
    case 'deleteBySid':
      return writes.deleteBySid(...w.args);
    case 'deleteProviderUser':
      return writes.deleteProviderUser(...w.args);
    case 'recordOnce':
      return writes.recordOnce(...w.args);
    case 'lockRefresh':
      return writes.lockRefresh(...w.args);
    case 'unlockRefresh':
      return writes.unlockRefresh(...w.args);
  }
}

/** A plain-words reason for an SQLite failure (its code), for pages and logs. */
export function describeSqliteError(err: { code?: unknown; message?: unknown }): string {
  const code = typeof err.code === 'string' ? err.code : '';
  if (code === 'SQLITE_FULL') return 'the disk (or the database) is full';
  if (code.startsWith('SQLITE_READONLY')) return 'the database is read-only';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return 'the database is locked by another process';
  if (code.startsWith('SQLITE_IOERR')) return 'a disk I/O error';
  if (code.startsWith('SQLITE_CANTOPEN')) return 'the database file cannot be opened';
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return 'the database file is damaged';
  return typeof err.message === 'string' ? err.message : 'unknown error';
}
