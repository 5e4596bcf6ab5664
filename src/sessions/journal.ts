// The journal of Portcullis before the SQLite store (`sessions.jsonl`), read once to migrate it:
// one JSON line per event, `{"op":"put","p":provider,"id":…,"x":expiresAt,"d":sealed record}`,
// `{"op":"del","id":…}` or `{"op":"hdr","n":[additionalHeaders names]}`, replayed in order. Nothing writes journals any more.
import type { SessionRecord } from './store.js';
import { unsealRecord } from './sealed.js';

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

export interface ReplayedJournal {
  /** The sessions live at `now`, with their sealed form (re-used as is: same key, same id). */
  live: { record: SessionRecord; sealed: string }[];
  /** additionalHeaders names recorded (`hdr` lines), and those of the live sessions. */
  headerNames: string[];
  /** Lines that could not be read (a torn last line, a rotated key, damage). */
  unreadable: number;
}

/** Replays a journal's text: the sessions it leaves live at `now`. */
export function replayJournal(text: string, keys: ReadonlyMap<string, Buffer>, now: number): ReplayedJournal {
  const live = new Map<string, { record: SessionRecord; sealed: string }>();
  const names = new Set<string>();
  let unreadable = 0;
  for (const raw of text.split('\n')) {
    if (!raw) continue;
    let entry: JournalPut | JournalDel | JournalHeaderNames;
    try {
      entry = JSON.parse(raw) as JournalPut | JournalDel | JournalHeaderNames;
    } catch {
      unreadable++; // a torn last line after a crash
      continue;
    }
    if (entry.op === 'del') {
      live.delete(entry.id);
      continue;
    }
    if (entry.op === 'hdr') {
      if (Array.isArray(entry.n)) for (const n of entry.n) if (typeof n === 'string') names.add(n);
      continue;
    }
    if (entry.op !== 'put' || typeof entry.id !== 'string' || typeof entry.d !== 'string') continue;
    if (!(entry.x > now)) {
      live.delete(entry.id);
      continue;
    }
    const key = keys.get(entry.p);
    if (!key) continue; // provider removed from config: its sessions go
    try {
      const record = unsealRecord(key, entry.id, entry.d);
      if (record !== undefined) live.set(entry.id, { record, sealed: entry.d });
    } catch {
      unreadable++; // key changed (cookie_secret rotated) or corrupted: the session is gone
    }
  }
  // A journal written before names were recorded: its live sessions still teach them.
  for (const { record } of live.values()) for (const [n] of record.proxy?.additionalHeaders ?? []) names.add(n);
  return { live: [...live.values()], headerNames: [...names], unreadable };
}
