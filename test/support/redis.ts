// A real Redis for the shared-session tests: `redis-server` on loopback, without persistence, in a
// temporary directory that is removed on stop. It runs in the foreground as a child of the test
// process and is stopped by its pid.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export const REDIS_BIN = process.env.PORTCULLIS_REDIS ?? '/usr/bin/redis-server';

export interface RunningRedis {
  port: number;
  /** `redis://127.0.0.1:<port>` */
  url: string;
  /** What redis-server wrote so far (for failure messages). */
  logs(): string;
  /** SIGTERM (SIGKILL after 3 s), wait for the exit, remove the directory. Idempotent. */
  stop(): Promise<void>;
}

/** Starts redis-server (on `port`, or a free one) and waits until it answers PING. */
export async function startRedis(opts: { port?: number } = {}): Promise<RunningRedis> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-redis-'));
  const child = spawn(
    REDIS_BIN,
    ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => ((exited = true), resolve()));
    child.once('error', (err) => ((output += String(err)), (exited = true), resolve()));
  });
  const stop = async () => {
    if (!exited && child.pid !== undefined) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (!(await answersPing(port))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server (${REDIS_BIN}) did not start on 127.0.0.1:${port}:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { port, url: `redis://127.0.0.1:${port}`, logs: () => output, stop };
}

/** true when something on 127.0.0.1:port answers `PING` with `+PONG`. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 500);
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}
