// Portcullis as a real child process (`node --import tsx src/cli.ts --config FILE`), for tests of
// signals, reloads and workers: its JSON log lines, waited for by message, and its exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

export interface PortcullisProcess {
  child: ChildProcess;
  /** Every JSON log line so far (stdout), in order. */
  lines: LogLine[];
  /** Everything written to stderr. */
  stderr(): string;
  /** The next line (from `from`, default: any line so far) matching `match`. */
  waitFor(match: (line: LogLine) => boolean, opts?: { from?: number; timeoutMs?: number }): Promise<LogLine>;
  /** Resolves with the exit code (or 128 + signal number when a signal ended it). */
  exited: Promise<number>;
  kill(signal: NodeJS.Signals): void;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

export function startPortcullis(configPath: string, env: NodeJS.ProcessEnv = {}): PortcullisProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', '--config', configPath], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  const waiters = new Set<() => void>();
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        lines.push({ msg: text, raw: true });
      }
    }
    for (const w of waiters) w();
  });
  let err = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
  });
  const exited = new Promise<number>((resolveExit) => {
    child.once('exit', (code, signal) => {
      for (const w of waiters) w();
      resolveExit(code ?? 128 + (SIGNALS[signal ?? ''] ?? 0));
    });
  });
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    kill: (signal) => child.kill(signal),
    waitFor(match, opts = {}) {
      const from = opts.from ?? 0;
      return new Promise((resolveLine, reject) => {
        const check = () => {
          const found = lines.slice(from).find(match);
          if (found) {
            cleanup();
            resolveLine(found);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`Portcullis exited (${child.exitCode ?? child.signalCode}) before the expected line; stderr: ${err.slice(-2000)}; last lines: ${JSON.stringify(lines.slice(-5))}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no such log line within ${opts.timeoutMs ?? 60_000} ms; last lines: ${JSON.stringify(lines.slice(-5))}; stderr: ${err.slice(-2000)}`));
        }, opts.timeoutMs ?? 60_000);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
