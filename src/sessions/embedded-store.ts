// The embedded session store: sessions in memory, and a journal on disk so that a restart
// keeps them — and keeps deleted ones deleted.
//
// Journal: one JSON line per event, `{"op":"put","p":provider,"id":…,"u":userKey-hash,"x":expiresAt,"d":ciphertext}`,
// `{"op":"del","id":…}` or `{"op":"hdr","n":[names]}` (additionalHeaders names seen at logins,
// kept forever: see SessionStore.recordHeaderNames). Session data holds tokens, so it is encrypted (AES-256-GCM) with a
// key derived from the owning provider's cookie_secret: a copy of the file alone reveals nothing.
// Deletions are written and fsynced before sign-out answers. At open the journal is replayed and
// rewritten with only the live sessions.
import { openSync, writeSync, fsyncSync, closeSync, readFileSync, renameSync, mkdirSync, existsSync, chmodSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SessionRecord, SessionStore } from './store.js';
import { sealRecord, unsealRecord } from './sealed.js';
import type { Logger } from '../pipeline/logger.js';

export interface EmbeddedStoreOptions {
  /** Journal path; null keeps sessions in memory only (tests, benchmarks). */
  path: string | null;
  /** Encryption key of each provider, by provider name. */
  keys: ReadonlyMap<string, Buffer>;
  log: Logger;
  /** How often expired sessions are dropped from memory. */
  sweepIntervalMs?: number;
}

interface JournalPut {
  op: 'put';
  p: string;
  id: string;
  x: number;
  d: string;
}
interface JournalDel {
  op: 'del';
  id: string;
}
interface JournalHeaderNames {
  op: 'hdr';
  n: string[];
}

export class EmbeddedSessionStore implements SessionStore {
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly byUser = new Map<string, Set<string>>();
  private readonly names = new Set<string>();
  private fd: number | null = null;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(private readonly opts: EmbeddedStoreOptions) {}

  async open(): Promise<void> {
    const path = this.opts.path;
    if (path) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      if (existsSync(path)) this.replay(readFileSync(path, 'utf8'));
      // Compact: rewrite only the live sessions, then append from there.
      const tmp = `${path}.${process.pid}.tmp`;
      const fd = openSync(tmp, 'w', 0o600);
      if (this.names.size > 0) writeSync(fd, this.namesLine([...this.names]));
      for (const r of this.sessions.values()) writeSync(fd, this.line(r));
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, path);
      chmodSync(path, 0o600);
      this.fd = openSync(path, 'a', 0o600);
      this.opts.log.info({ path, sessions: this.sessions.size }, 'session journal opened');
    }
    this.sweeper = setInterval(() => this.sweep(), this.opts.sweepIntervalMs ?? 60_000);
    this.sweeper.unref();
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    if (this.fd !== null) {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = null;
    }
  }

  get(id: string): SessionRecord | undefined {
    const r = this.sessions.get(id);
    if (r === undefined) return undefined;
    if (r.expiresAt <= Date.now()) {
      this.forget(r);
      return undefined;
    }
    return r;
  }

  async put(record: SessionRecord): Promise<void> {
    this.remember(record);
    if (this.fd !== null) writeSync(this.fd, this.line(record));
  }

  async delete(id: string): Promise<void> {
    const r = this.sessions.get(id);
    if (r) this.forget(r);
    this.journalDeletes([id]);
  }

  async deleteUser(userKey: string): Promise<number> {
    const ids = [...(this.byUser.get(userKey) ?? [])];
    for (const id of ids) this.forget(this.sessions.get(id)!);
    this.journalDeletes(ids);
    return ids.length;
  }

  size(): number {
    return this.sessions.size;
  }

  async recordHeaderNames(names: readonly string[]): Promise<void> {
    const added = names.filter((n) => !this.names.has(n));
    if (added.length === 0) return;
    for (const n of added) this.names.add(n);
    if (this.fd !== null) {
      writeSync(this.fd, this.namesLine(added));
      // Rare (a name never seen before) and it must not be forgotten by a crash: durable now.
      fsyncSync(this.fd);
    }
  }

  headerNames(): ReadonlySet<string> {
    return this.names;
  }

  private namesLine(names: string[]): string {
    return JSON.stringify({ op: 'hdr', n: names } satisfies JournalHeaderNames) + '\n';
  }

  private journalDeletes(ids: string[]): void {
    if (this.fd === null || ids.length === 0) return;
    let lines = '';
    for (const id of ids) lines += JSON.stringify({ op: 'del', id } satisfies JournalDel) + '\n';
    writeSync(this.fd, lines);
    // A signed-out session must not come back after a crash: make the deletion durable now.
    fsyncSync(this.fd);
  }

  private remember(r: SessionRecord): void {
    this.sessions.set(r.id, r);
    let set = this.byUser.get(r.userKey);
    if (!set) this.byUser.set(r.userKey, (set = new Set()));
    set.add(r.id);
  }

  private forget(r: SessionRecord): void {
    this.sessions.delete(r.id);
    const set = this.byUser.get(r.userKey);
    if (set) {
      set.delete(r.id);
      if (set.size === 0) this.byUser.delete(r.userKey);
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const r of this.sessions.values()) if (r.expiresAt <= now) this.forget(r);
  }

  private line(r: SessionRecord): string {
    const key = this.opts.keys.get(r.provider);
    if (!key) throw new Error(`no journal key for provider ${r.provider}`);
    const d = sealRecord(key, r);
    return JSON.stringify({ op: 'put', p: r.provider, id: r.id, x: r.expiresAt, d } satisfies JournalPut) + '\n';
  }

  private replay(text: string): void {
    const now = Date.now();
    let bad = 0;
    for (const raw of text.split('\n')) {
      if (!raw) continue;
      let entry: JournalPut | JournalDel | JournalHeaderNames;
      try {
        entry = JSON.parse(raw) as JournalPut | JournalDel | JournalHeaderNames;
      } catch {
        bad++; // a torn last line after a crash
        continue;
      }
      if (entry.op === 'del') {
        const r = this.sessions.get(entry.id);
        if (r) this.forget(r);
        continue;
      }
      if (entry.op === 'hdr') {
        if (Array.isArray(entry.n)) for (const n of entry.n) if (typeof n === 'string') this.names.add(n);
        continue;
      }
      if (entry.op !== 'put' || entry.x <= now) continue;
      const key = this.opts.keys.get(entry.p);
      if (!key) continue; // provider removed from config: its sessions go
      try {
        const record = unsealRecord(key, entry.id, entry.d);
        if (record === undefined) continue;
        this.remember(record);
        // A journal written before names were recorded: its live sessions still teach them.
        for (const [n] of record.proxy?.additionalHeaders ?? []) this.names.add(n);
      } catch {
        bad++; // key changed (cookie_secret rotated) or corrupted: the session is gone
      }
    }
    if (bad > 0) this.opts.log.warn({ entries: bad }, 'session journal entries could not be read and were dropped');
  }
}
