// The embedded session store on a real SQLite file: durability across reopen, sealing at rest,
// migration from the older journal, sweeping and bounded size, the per-user cap, failures that
// change nothing, and two processes sharing one file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { EmbeddedSessionStore, embeddedPaths } from '../../src/sessions/embedded-store.js';
import { SessionStoreError, type SessionRecord } from '../../src/sessions/store.js';
import type { Logger } from '../../src/pipeline/logger.js';
import { OldJournalWriter } from './fixtures/journal-writer.js';

const log = pino({ level: 'silent' }) as unknown as Logger;
const keys = new Map([['app', randomBytes(32)], ['other', randomBytes(32)]]);

function record(id: string, user: string, provider = 'app', ttlMs = 60_000, createdAt = Date.now()): SessionRecord {
  return {
    id,
    provider,
    userKey: `iss\u0000${user}`,
    createdAt,
    expiresAt: Date.now() + ttlMs,
    claims: { sub: user, email: `${user}@example.com`, groups: ['top-secret-group'] },
    idToken: 'header.payload.signature',
    accessToken: 'access.token.jwt',
  };
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function openStore(path: string | null, extra: Partial<ConstructorParameters<typeof EmbeddedSessionStore>[0]> = {}): Promise<EmbeddedSessionStore> {
  const s = new EmbeddedSessionStore({ path, keys, log, ...extra });
  await s.open();
  return s;
}

/** Rows in the file, read by a connection of the test's own. */
function rowsIn(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare('SELECT count(*) FROM sessions').pluck().get() as number;
  } finally {
    db.close();
  }
}

test('sessions survive a reopen; deleted ones stay deleted; expired ones are gone', async (t) => {
  const path = join(tempDir(t), 'sessions.db');
  const a = await openStore(path);
  await a.put(record('s1', 'alice'));
  await a.put(record('s2', 'alice', 'other'));
  const s3 = record('s3', 'bob');
  await a.put(s3);
  await a.put(record('s4', 'carol', 'app', 30));
  await a.put(record('s5', 'dave'));
  assert.equal(await a.deleteUser('iss\u0000alice'), 2);
  await a.delete('s5');
  assert.equal(a.get('s1'), undefined, 'gone in the process that deleted it');
  await a.close();
  await new Promise((r) => setTimeout(r, 50));
  const b = await openStore(path);
  assert.equal(b.get('s1'), undefined);
  assert.equal(b.get('s2'), undefined);
  assert.equal(b.get('s5'), undefined);
  assert.deepEqual(b.get('s3'), s3, 'the whole record comes back');
  assert.equal(b.get('s4'), undefined, 'expired');
  assert.equal(b.size(), 1);
  assert.equal(await b.deleteUser('iss\u0000nobody'), 0);
  await b.close();
});

test('the file is SQLite in WAL mode, mode 0600, and holds no claims or tokens in clear', async (t) => {
  const path = join(tempDir(t), 'sessions.db');
  const s = await openStore(path);
  await s.put(record('s1', 'alice'));
  const bytes = Buffer.concat([readFileSync(path), existsSync(path + '-wal') ? readFileSync(path + '-wal') : Buffer.alloc(0)]).toString('latin1');
  assert.doesNotMatch(bytes, /alice@example\.com|header\.payload\.signature|access\.token\.jwt|top-secret-group|alice/);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const db = new Database(path, { readonly: true });
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  db.close();
  await s.close();
  // Another key (cookie_secret rotated): the sessions cannot be read, so there are none.
  const other = await openStore(path, { keys: new Map([['app', randomBytes(32)]]) });
  assert.equal(other.get('s1'), undefined);
  await other.close();
});

test('the same stored version is the same object (stage caches hit); a replaced session is a new one', async (t) => {
  const s = await openStore(join(tempDir(t), 'sessions.db'));
  t.after(() => s.close());
  await s.put(record('s1', 'alice'));
  const first = s.get('s1');
  assert.ok(first);
  assert.equal(s.get('s1'), first);
  await s.put({ ...record('s1', 'alice'), claims: { sub: 'alice', email: 'new@example.com' } });
  const second = s.get('s1');
  assert.notEqual(second, first);
  assert.equal(second?.claims.email, 'new@example.com');
  await s.delete('s1');
  assert.equal(s.get('s1'), undefined);
});

test('a cached record is served only while its row is unchanged: a replaced, ended or expired session is seen at once, in memory and on a file', async (t) => {
  for (const path of [null, join(tempDir(t), 'sessions.db')]) {
    const where = path === null ? 'in memory' : 'on a file';
    const s = await openStore(path);
    t.after(() => s.close());
    await s.put(record('c1', 'alice'));
    const first = s.get('c1');
    assert.equal(s.get('c1'), first, `${where}: served from the cache`);
    await s.put({ ...record('c1', 'alice'), claims: { sub: 'alice', email: 'replaced@example.com' } });
    assert.equal(s.get('c1')?.claims.email, 'replaced@example.com', `${where}: the replaced row`);
    // Ended by a write that does not touch this process's cache (a sign-out of every session of the user).
    assert.equal(await s.deleteUser(record('c1', 'alice').userKey), 1);
    assert.equal(s.get('c1'), undefined, `${where}: the ended session`);
    // Expired while cached, with no write since.
    await s.put(record('c2', 'bob', 'app', 300));
    assert.ok(s.get('c2'));
    assert.ok(s.get('c2'));
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(s.get('c2'), undefined, `${where}: the expired session`);
  }
});

test('a journal of the older store is migrated on first start: users stay signed in, signed-out ones stay out', async (t) => {
  const dir = tempDir(t);
  const journal = join(dir, 'sessions.jsonl');
  const old = new OldJournalWriter(journal, keys);
  old.put(record('a1', 'alice'));
  old.put(record('a2', 'alice', 'other'));
  old.put(record('b1', 'bob'));
  old.put(record('c1', 'carol'));
  old.deleteUser('iss\u0000carol');
  old.put(record('e1', 'erin', 'app', -1));
  old.tornLine();
  old.close();
  const backup = join(dir, 'journal.backup');
  copyFileSync(journal, backup);

  // An old config names the journal: the database goes next to it.
  assert.deepEqual(embeddedPaths(journal), { database: join(dir, 'sessions.db'), journal });
  const s = await openStore(journal);
  assert.equal(existsSync(journal), false, 'the journal is removed once migrated');
  assert.ok(existsSync(join(dir, 'sessions.db')));
  assert.equal(s.get('a1')?.claims.email, 'alice@example.com');
  assert.equal(s.get('a2')?.provider, 'other');
  assert.equal(s.get('b1')?.userKey, 'iss\u0000bob');
  assert.equal(s.get('c1'), undefined, 'signed out in the journal');
  assert.equal(s.get('e1'), undefined, 'expired');
  assert.equal(s.get('torn'), undefined);
  assert.equal(s.size(), 3);
  // Sign-out works on migrated sessions (the user index was rebuilt).
  assert.equal(await s.deleteUser('iss\u0000alice'), 2);
  await s.close();

  // A crash between the import and the journal's removal leaves the same journal behind: it is
  // not imported again, so alice's signed-out sessions do not come back.
  copyFileSync(backup, journal);
  const again = await openStore(join(dir, 'sessions.db'));
  assert.equal(existsSync(journal), false);
  assert.equal(again.get('a1'), undefined);
  assert.equal(again.get('b1')?.claims.sub, 'bob');
  await again.close();
});

test('expired rows are swept and the file stays the size of what is live', async (t) => {
  const path = join(tempDir(t), 'sessions.db');
  const s = await openStore(path);
  t.after(() => s.close());
  await s.put(record('short', 'alice', 'app', 30));
  await s.put(record('long', 'bob'));
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(await s.sweep(), 1);
  assert.equal(rowsIn(path), 1);

  // Login + sign-out, over and over: the old journal grew ~4.3 KB per cycle until a restart.
  const fileSize = () => statSync(path).size + (existsSync(path + '-wal') ? statSync(path + '-wal').size : 0);
  const cycle = async (i: number) => {
    const r = { ...record(`c${i}`, `user${i % 7}`), claims: { sub: `user${i % 7}`, groups: Array.from({ length: 40 }, (_, g) => `group-${g}`) } };
    await s.put(r);
    await s.deleteUser(r.userKey);
  };
  for (let i = 0; i < 300; i++) await cycle(i);
  const after300 = statSync(path).size;
  for (let i = 300; i < 1200; i++) await cycle(i);
  assert.ok(statSync(path).size <= after300 + 16 * 1024, `database file grew from ${after300} to ${statSync(path).size} bytes`);
  // WAL: reset after each checkpoint (at most ~1000 pages of 4 KiB between checkpoints).
  assert.ok(fileSize() < 5 * 1024 * 1024, `database + WAL: ${fileSize()} bytes after 1200 logins`);
  assert.equal(s.size(), 1);
});

test('beyond max_sessions_per_user the oldest sessions of that user are ended', async (t) => {
  const s = await openStore(join(tempDir(t), 'sessions.db'), { maxSessionsPerUser: 3 });
  t.after(() => s.close());
  const t0 = Date.now();
  await s.put(record('bob1', 'bob'));
  for (let i = 1; i <= 5; i++) await s.put(record(`a${i}`, 'alice', i % 2 ? 'app' : 'other', 60_000, t0 + i));
  assert.equal(s.get('a1'), undefined);
  assert.equal(s.get('a2'), undefined);
  for (const id of ['a3', 'a4', 'a5', 'bob1']) assert.ok(s.get(id), id);
  assert.equal(s.size(), 4);
  // Expired sessions do not count against the cap.
  const c = await openStore(null, { maxSessionsPerUser: 2 });
  t.after(() => c.close());
  await c.put(record('x1', 'carol', 'app', 20, t0));
  await new Promise((r) => setTimeout(r, 40));
  await c.put(record('x2', 'carol', 'app', 60_000, t0 + 1));
  await c.put(record('x3', 'carol', 'app', 60_000, t0 + 2));
  assert.ok(c.get('x2') && c.get('x3'));
  // 150 logins of one user leave 100 with the default cap.
  const d = await openStore(null);
  t.after(() => d.close());
  for (let i = 0; i < 150; i++) await d.put(record(`d${i}`, 'dave', 'app', 60_000, t0 + i));
  assert.equal(d.size(), 100);
  assert.equal(d.get('d49'), undefined);
  assert.ok(d.get('d50'));
});

test('a full disk: the login that cannot be recorded fails with SessionStoreError and changes nothing', async (t) => {
  const path = join(tempDir(t), 'sessions.db');
  const probe = await openStore(path);
  await probe.close();
  const pages = (() => {
    const db = new Database(path, { readonly: true });
    const n = db.pragma('page_count', { simple: true }) as number;
    db.close();
    return n;
  })();
  const s = await openStore(path, { maxPageCount: pages + 2 });
  const big = (id: string) => ({ ...record(id, 'alice'), claims: { sub: 'alice', blob: randomBytes(3000).toString('base64') } });
  const stored: string[] = [];
  let failure: unknown;
  for (let i = 0; i < 50 && failure === undefined; i++) {
    try {
      await s.put(big(`f${i}`));
      stored.push(`f${i}`);
    } catch (err) {
      failure = err;
      assert.equal(s.get(`f${i}`), undefined, 'the failed login is not there');
    }
  }
  assert.ok(failure instanceof SessionStoreError, String(failure));
  assert.match((failure as Error).message, /disk \(or the database\) is full/);
  assert.doesNotMatch((failure as Error).message, /alice|blob/);
  await s.close();
  const reopened = await openStore(path);
  for (const id of stored) assert.ok(reopened.get(id), `${id} was answered as stored and is there after a restart`);
  assert.equal(reopened.size(), stored.length);
  await reopened.close();
});

test('a database locked by another process: sign-out and login fail, change nothing, and work once it is free', async (t) => {
  const path = join(tempDir(t), 'sessions.db');
  const s = await openStore(path, { busyTimeoutMs: 150 });
  t.after(() => s.close());
  await s.put(record('s1', 'alice'));
  const other = new Database(path);
  other.exec('BEGIN IMMEDIATE');
  await assert.rejects(s.deleteUser('iss\u0000alice'), (err: Error) => err instanceof SessionStoreError && /locked by another process/.test(err.message));
  await assert.rejects(s.put(record('s2', 'bob')), SessionStoreError);
  assert.ok(s.get('s1'), 'reads go on while another process holds the write lock');
  other.exec('ROLLBACK');
  other.close();
  assert.ok(s.get('s1'), 'the failed sign-out ended nothing');
  assert.equal(s.get('s2'), undefined);
  assert.equal(await s.deleteUser('iss\u0000alice'), 1);
  assert.equal(s.get('s1'), undefined);
});

test('a database that cannot be opened is a clear start-up error', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'sessions.db');
  // Not a database (e.g. a wrong path in the config).
  const fs = await import('node:fs');
  fs.writeFileSync(path, 'this is not a database, but it is long enough to be read as a header of one. '.repeat(4));
  await assert.rejects(openStore(path), /session store: cannot use the SQLite database .*sessions\.db: the database file is damaged/);
});

// Two processes on one file (what `outpost.workers` runs): a login in one is seen by the other,
// and a sign-out through either is refused by both from the moment it answered.
class StoreProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private next = 1;
  private readonly waiting = new Map<number, (m: { value?: unknown; error?: string }) => void>();
  readonly ready: Promise<void>;

  constructor(path: string) {
    const hex = Object.fromEntries([...keys].map(([k, v]) => [k, v.toString('hex')]));
    this.child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'store-process.ts'), path], {
      env: { ...process.env, PORTCULLIS_TEST_KEYS: JSON.stringify(hex) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    this.child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    this.ready = new Promise((resolve, reject) => {
      this.waiting.set(0, () => resolve());
      this.child.once('exit', (code) => reject(new Error(`store process exited (${code}): ${stderr}`)));
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const m = JSON.parse(line) as { n: number; value?: unknown; error?: string };
      this.waiting.get(m.n)?.(m);
      this.waiting.delete(m.n);
    });
  }

  call(op: string, ...args: unknown[]): Promise<unknown> {
    const n = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(n, (m) => (m.error !== undefined ? reject(new Error(m.error)) : resolve(m.value)));
      this.child.stdin.write(JSON.stringify({ n, op, args }) + '\n');
    });
  }

  async stop(): Promise<void> {
    await this.call('close').catch(() => undefined);
    this.child.kill();
  }
}

test('two processes on one database: logins are shared; a sign-out through either is refused by both as soon as it answers', async (t) => {
  const path = join(tempDir(t), 'sessions.db');
  const here = await openStore(path);
  const there = new StoreProcess(path);
  t.after(async () => {
    await there.stop();
    await here.close();
  });
  await there.ready;

  for (let i = 0; i < 40; i++) {
    const user = `user${i}`;
    const [writer, reader] = i % 2 === 0 ? ['here', 'there'] : ['there', 'here'];
    const r = record(`x${i}`, user);
    if (writer === 'here') await here.put(r);
    else await there.call('put', r);
    // Read in the other process right after the login answered, and again (now from its cache).
    for (let k = 0; k < 2; k++) {
      const seen = reader === 'here' ? here.get(r.id) : ((await there.call('get', r.id)) as SessionRecord | null);
      assert.equal(seen?.claims.email, `${user}@example.com`, `${reader} sees the login made by ${writer}`);
    }
    // Sign out through the reader; the writer (which has the record cached) must refuse at once.
    const ended = reader === 'here' ? await here.deleteUser(r.userKey) : await there.call('deleteUser', r.userKey);
    assert.equal(ended, 1);
    const after = writer === 'here' ? here.get(r.id) : await there.call('get', r.id);
    assert.ok(after === undefined || after === null, `${writer} refuses the session signed out by ${reader}`);
  }

  // Both processes writing at once: every write lands (each waits its turn for the write lock).
  const burst = Array.from({ length: 60 }, (_, i) => (i % 2 ? there.call('put', record(`b${i}`, `burst${i}`)) : here.put(record(`b${i}`, `burst${i}`))));
  await Promise.all(burst);
  assert.equal(here.size(), 60);
  assert.equal(await there.call('size'), 60);
});

test('additionalHeaders names survive a reopen, reach the other processes, and come along from a journal', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'sessions.db');
  const a = await openStore(path);
  const b = await openStore(path, { headerNamesRefreshMs: 20 });
  const live = a.headerNames();
  await a.recordHeaderNames(['x-team']);
  await a.recordHeaderNames(['x-team', 'x-tenant']);
  assert.deepEqual([...live].sort(), ['x-team', 'x-tenant'], 'the same Set, updated in place');
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual([...b.headerNames()].sort(), ['x-team', 'x-tenant'], 'another store on the file re-reads them');
  // A session another process stored teaches its names as soon as it is loaded.
  await a.put({ ...record('s1', 'alice'), proxy: { additionalHeaders: [['x-dept', 'ops']] } });
  const c = await openStore(path, { headerNamesRefreshMs: 60_000 });
  c.get('s1');
  assert.ok(c.headerNames().has('x-dept'));
  await Promise.all([a.close(), b.close(), c.close()]);
  const reopened = await openStore(path);
  assert.deepEqual([...reopened.headerNames()].sort(), ['x-team', 'x-tenant']);
  await reopened.close();

  // A journal: its `hdr` lines and the names of its live sessions are migrated.
  const other = join(dir, 'other.jsonl');
  const old = new OldJournalWriter(other, keys);
  old.headerNames(['x-old']);
  old.put({ ...record('j1', 'bob'), proxy: { additionalHeaders: [['x-from-session', 'v']] } });
  old.close();
  const migrated = await openStore(other);
  assert.deepEqual([...migrated.headerNames()].sort(), ['x-from-session', 'x-old']);
  await migrated.close();
});
