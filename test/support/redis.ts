// A real Redis for the shared-session tests: `redis-server` on loopback, without persistence, in a
// temporary directory that is removed on stop; replicas, cluster nodes and `redis-sentinel` too. It runs in the foreground as a child of the test
// process and is stopped by its pid.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  /** SIGKILL (a crash: no shutdown, no goodbye to replicas), wait for the exit. */
  kill(): Promise<void>;
}

export interface RedisStartOptions {
  port?: number;
  /** More redis-server arguments, e.g. `['--replicaof', '127.0.0.1', '6379']` or cluster settings. */
  args?: string[];
}

/** Starts redis-server (on `port`, or a free one) and waits until it answers PING. */
export async function startRedis(opts: RedisStartOptions = {}): Promise<RunningRedis> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-redis-'));
  return supervise(
    REDIS_BIN,
    ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', ...(opts.args ?? [])],
    port,
    dir,
  );
}

export const SENTINEL_BIN = process.env.PORTCULLIS_REDIS_SENTINEL ?? '/usr/bin/redis-sentinel';

export interface SentinelStartOptions {
  masterName: string;
  masterPort: number;
  /** Sentinels that must agree the master is down (default 1). */
  quorum?: number;
  /** How long the master may not answer before it is considered down (default 1000 ms). */
  downAfterMs?: number;
}

/** Starts redis-sentinel (Debian's package) monitoring a master on 127.0.0.1. */
export async function startSentinel(opts: SentinelStartOptions): Promise<RunningRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-sentinel-'));
  // Sentinel rewrites its config file as it learns: it must be its own, writable file.
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      'daemonize no',
      'loglevel warning',
      `sentinel monitor ${opts.masterName} 127.0.0.1 ${opts.masterPort} ${opts.quorum ?? 1}`,
      `sentinel down-after-milliseconds ${opts.masterName} ${opts.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${opts.masterName} 10000`,
      `sentinel parallel-syncs ${opts.masterName} 1`,
      '',
    ].join('\n'),
  );
  return supervise(SENTINEL_BIN, [conf], port, dir);
}

async function supervise(bin: string, args: string[], port: number, dir: string): Promise<RunningRedis> {
  const child = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
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
  const kill = async () => {
    if (!exited && child.pid !== undefined) child.kill('SIGKILL');
    await exit;
  };
  const deadline = Date.now() + 10_000;
  while (!(await answersPing(port))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`${bin} did not start on 127.0.0.1:${port}:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { port, url: `redis://127.0.0.1:${port}`, logs: () => output, stop, kill };
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
