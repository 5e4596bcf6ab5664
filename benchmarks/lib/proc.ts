// Child processes for the benchmarks: every server runs in its own process (so its RSS can be
// read from /proc), reports readiness over IPC, and is killed when the harness exits or fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
export { freePort } from '../../test/support/ports.js';

const live = new Set<ChildProcess>();
let hooked = false;

function killAll(): void {
  for (const c of live) {
    try {
      if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

/** Kill every child this process started, on normal exit, on signals and on uncaught errors. */
export function installCleanup(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      killAll();
      process.exit(130);
    });
  }
}

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly info: Record<string, unknown>;
  /** Resident set size now and its high-water mark, in bytes, summed over the process tree (from /proc/<pid>/status). */
  rss(): { rss: number; hwm: number };
  /** CPU seconds (user + system) used so far by the process and every process below it. */
  cpu(): number;
  /** Send a message over IPC and wait for the reply of the same `op`. */
  ask(msg: { op: string } & Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export function readRss(pid: number): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

/** Clock ticks per second of /proc/<pid>/stat's time fields (getconf CLK_TCK; 100 on Linux). */
const CLK_TCK = (() => {
  const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(out.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** `pid` and every process below it, from /proc (each process's parent in its stat line). */
export function processTree(pid: number): number[] {
  const parents = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [pid];
  }
  for (const e of entries) {
    if (e.charCodeAt(0) < 48 || e.charCodeAt(0) > 57) continue;
    const stat = readStat(Number(e));
    if (!stat) continue;
    const list = parents.get(stat.ppid);
    if (list) list.push(Number(e));
    else parents.set(stat.ppid, [Number(e)]);
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(parents.get(p) ?? []));
  }
  return out;
}

function readStat(pid: number): { ppid: number; ticks: number } | null {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch {
    return null; // the process ended while we read
  }
}

/**
 * CPU seconds of `pid` and all its descendants: utime + stime of each live process, plus the
 * cutime + cstime it collected from children that already exited (Apache's workers come and
 * go; a Node server with workers forks). Read from /proc around a load round, the difference
 * divided by the requests served is the server's CPU per request, whatever the core count.
 */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) ticks += readStat(p)?.ticks ?? 0;
  return ticks / CLK_TCK;
}

/**
 * RSS of the whole process tree: the sum over its processes of their RSS now and of their
 * high-water marks (Portcullis's primary and its workers, Apache's parent and its child). Shared
 * pages count once per process, so for several processes this is an upper bound.
 */
export function treeRss(pid: number): { rss: number; hwm: number } {
  let rss = 0;
  let hwm = 0;
  for (const p of processTree(pid)) {
    const r = readRss(p);
    rss += r.rss;
    hwm += r.hwm;
  }
  return { rss, hwm };
}

function track(name: string, child: ChildProcess): void {
  installCleanup();
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.stderr?.on('data', (d: Buffer) => {
    const s = d.toString();
    if (/Unsupported runtime|ExperimentalWarning|--trace-warnings/.test(s)) return;
    process.stderr.write(`[${name}] ${s}`);
  });
}

async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Start `benchmarks/e2e/servers/<script>.ts` in a Node child with tsx; resolves when it says ready. */
export async function startNodeServer(name: string, script: string, config: Record<string, unknown>, opts: { timeoutMs?: number; nodeArgs?: string[] } = {}): Promise<Child> {
  const file = fileURLToPath(new URL(`../e2e/servers/${script}.ts`, import.meta.url));
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', file], {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    env: { ...process.env, BENCH_CONFIG: JSON.stringify(config), NODE_ENV: 'production' },
  });
  track(name, child);
  const pending = new Map<string, (m: Record<string, unknown>) => void>();
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready after ${opts.timeoutMs ?? 30000} ms`)), opts.timeoutMs ?? 30_000);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name}: exited before ready (code ${code}, signal ${sig})`));
    });
    child.on('message', (m: Record<string, unknown>) => {
      if (m.op === 'ready') {
        clearTimeout(timer);
        resolve(m);
        return;
      }
      const waiter = pending.get(String(m.op));
      if (waiter) {
        pending.delete(String(m.op));
        waiter(m);
      }
    });
  }).catch(async (err) => {
    await stopProcess(child, 'SIGKILL');
    throw err;
  });
  return {
    name,
    pid: child.pid!,
    info,
    rss: () => treeRss(child.pid!),
    cpu: () => cpuSeconds(child.pid!),
    ask: (msg, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: no answer to ${msg.op}`)), timeoutMs);
        pending.set(msg.op, (m) => {
          clearTimeout(timer);
          resolve(m);
        });
        child.send(msg);
      }),
    stop: () => stopProcess(child),
  };
}

/** Start any program (nginx, Apache, a Go server); ready when `port` accepts connections. */
export async function startProgram(
  name: string,
  cmd: string,
  args: string[],
  port: number,
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; stopSignal?: NodeJS.Signals } = {},
): Promise<Child> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: opts.env ?? process.env });
  track(name, child);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name}: exited with code ${child.exitCode}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      await stopProcess(child, 'SIGKILL');
      throw new Error(`${name}: port ${port} not open after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name,
    pid: child.pid!,
    info: { port },
    rss: () => treeRss(child.pid!),
    cpu: () => cpuSeconds(child.pid!),
    ask: () => Promise.reject(new Error(`${name}: no IPC`)),
    stop: () => stopProcess(child, opts.stopSignal ?? 'SIGQUIT'),
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}


/** In a child server: report readiness, answer IPC requests, exit when the parent goes away. */
export function childMain(handlers: Record<string, (msg: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>>, onStop: () => Promise<void>): {
  ready(info: Record<string, unknown>): void;
} {
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const t = setTimeout(() => process.exit(0), 3000);
    t.unref();
    try {
      await onStop();
    } finally {
      process.exit(0);
    }
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
  process.on('message', async (m: Record<string, unknown>) => {
    const h = handlers[String(m.op)];
    if (!h) return;
    try {
      process.send?.({ ...(await h(m)), op: m.op });
    } catch (err) {
      process.send?.({ op: m.op, error: (err as Error).message });
    }
  });
  return { ready: (info) => process.send?.({ ...info, op: 'ready' }) };
}

export function benchConfig<T>(): T {
  return JSON.parse(process.env.BENCH_CONFIG ?? '{}') as T;
}
