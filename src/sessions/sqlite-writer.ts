// The embedded store's writer thread: every change to the session database runs here, so that
// the fsync of a commit (and a wait for another process's write lock) never blocks the event
// loop. Messages: `{ n, op, args }` → `{ n, ok: number }` or `{ n, error: { code, message } }`.
import { parentPort, workerData } from 'node:worker_threads';
import { openSessionDatabase, SessionWrites, runWrite, type DatabaseOptions, type WriteOp } from './sqlite-ops.js';

export interface WriterData extends DatabaseOptions {
  path: string;
}

export type WriterRequest = { n: number; close?: false } & WriteOp;
export type WriterReply = { n: number; ok: number } | { n: number; error: { code: string; message: string } } | { n: 0; fatal: { code: string; message: string } };

const port = parentPort!;
const data = workerData as WriterData;

const errorOf = (err: unknown) => ({ code: String((err as { code?: unknown }).code ?? ''), message: String((err as Error).message) });

let writes: SessionWrites;
let db: ReturnType<typeof openSessionDatabase>;
try {
  db = openSessionDatabase(data.path, data);
  writes = new SessionWrites(db);
} catch (err) {
  port.postMessage({ n: 0, fatal: errorOf(err) } satisfies WriterReply);
  process.exit(1);
}

port.on('message', (m: WriterRequest | { n: number; close: true }) => {
  if (m.close === true) {
    db.close();
    port.postMessage({ n: m.n, ok: 0 } satisfies WriterReply);
    port.close();
    return;
  }
  try {
    port.postMessage({ n: m.n, ok: runWrite(writes, m) } satisfies WriterReply);
  } catch (err) {
    port.postMessage({ n: m.n, error: errorOf(err) } satisfies WriterReply);
  }
});
