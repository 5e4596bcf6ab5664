// Portcullis as a running service: the process model and its signals.
//
//   SIGHUP            reload the config file (also on a change of the file with outpost.watch_config):
//                     a config that cannot be served is logged in one line and the running one stays
//   SIGTERM, SIGINT   drain and exit 0 (see Outpost.shutdown); a second one exits at once
//
// One process serves everything (workers: 1), or a primary process supervises several workers
// that share the listeners (cluster.ts).
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseConfig, ConfigError, type PortcullisConfig } from '../config/index.js';
import { Outpost } from './outpost.js';
import { VERSION_STRING } from '../version.js';
import { workerCount } from './workers.js';

export interface ServiceOptions {
  /** The config, loaded and validated. */
  config: PortcullisConfig;
  /** The file it came from: SIGHUP and outpost.watch_config read it again. Absent for the demo. */
  configPath?: string;
  /** Runs after the outpost stopped, before the process exits (the demo's identity provider). */
  onStopped?: () => Promise<void>;
}

/** An error as one log line: a config error's issues joined, never a stack. */
export function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\n\s*/g, '; ');
}

/** Reads and validates the config file again (SIGHUP, a watched change, a cluster's primary). */
export function readConfig(path: string): { text: string; config: PortcullisConfig } {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [{ code: 'config.unreadable', field: '', message: (err as Error).message }]);
  }
  return { text, config: parseConfig(text, { source: path, baseDir: dirname(absolute) }) };
}

/** Exit status after a second SIGINT / SIGTERM: what a shell reports for a process the signal ended. */
export const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Calls `reload` for SIGHUP and, when `watch()` says so, for a change of `path`; runs one reload
 * at a time and folds the requests that arrive meanwhile into one more.
 */
export class ReloadTrigger {
  private running: Promise<void> | null = null;
  private again = false;
  private watching: string | null = null;
  private readonly onChange = (now: Stats, before: Stats) => {
    if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) this.request('file changed');
  };

  constructor(private readonly reload: (why: string) => Promise<void>) {}

  request(why: string): void {
    if (this.running !== null) {
      this.again = true;
      return;
    }
    this.running = this.reload(why).finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.request(why);
      }
    });
  }

  /** Watches `path` (polling its stat once a second: editors' renames and Kubernetes' symlink swaps are seen too), or stops. */
  watch(path: string | null): void {
    if (this.watching === path) return;
    if (this.watching !== null) unwatchFile(this.watching, this.onChange);
    this.watching = path;
    if (path !== null) watchFile(path, { interval: 1000, persistent: false }, this.onChange);
  }

  close(): void {
    this.watch(null);
  }
}

/**
 * Runs the outpost as configured: in this process (`outpost.workers` resolves to 1), or as the
 * primary of several workers (cluster.ts). Resolves once listening; signals do the rest.
 */
export async function runService(opts: ServiceOptions & { configText?: string }): Promise<void> {
  if (workerCount(opts.config) === 1) {
    await runSingleProcess(opts);
    return;
  }
  const { runPrimary } = await import('./cluster.js');
  let text = opts.configText;
  let source = opts.config.source ?? '<config>';
  if (text === undefined && opts.configPath !== undefined) {
    // The text the workers parse is the file as read now, validated again here.
    const path = opts.configPath;
    const read = readConfig(path);
    text = read.text;
    opts = { ...opts, config: read.config };
    source = path;
  }
  if (text === undefined) throw new Error('runService: the config text is needed to start workers');
  const { configText: _text, ...rest } = opts;
  await runPrimary({ ...rest, configText: { text, source, baseDir: opts.config.baseDir } });
}

/** A listening address as the URL a user would open (IPv6 in brackets), for the start-up line. */
export function listenerUrl(scheme: 'http' | 'https', a: { address: string; port: number } | undefined): string | undefined {
  return a && `${scheme}://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
}

/** One process: the outpost, its signals, reloads. Resolves once listening. */
export async function runSingleProcess(opts: ServiceOptions): Promise<Outpost> {
  const outpost = await Outpost.create(opts.config);
  const log = outpost.log;
  const addresses = await outpost.listen();
  log.info({ http: listenerUrl('http', addresses.http), https: listenerUrl('https', addresses.https), metrics: listenerUrl('http', addresses.metrics), version: VERSION_STRING }, 'Portcullis is listening');

  const path = opts.configPath;
  const trigger = new ReloadTrigger(async (why) => {
    if (path === undefined) {
      log.warn({ why }, 'reload: there is no config file to read again (demo)');
      return;
    }
    try {
      const { config } = readConfig(path);
      await outpost.reload(config);
      outpost.metrics?.reloads.record(true);
      trigger.watch(config.outpost.watch_config ? path : null);
      log.info({ why, providers: config.providers.length }, 'config reloaded');
    } catch (err) {
      outpost.metrics?.reloads.record(false);
      log.error({ why, err: oneLine(err) }, 'reload failed: the running config keeps serving');
    }
  });
  if (path !== undefined && opts.config.outpost.watch_config) trigger.watch(path);
  process.on('SIGHUP', () => trigger.request('SIGHUP'));

  let stopping = false;
  const stop = (signal: 'SIGINT' | 'SIGTERM') => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(SIGNAL_EXIT[signal]);
    }
    stopping = true;
    trigger.close();
    log.info({ signal, timeout_s: outpost.config.outpost.shutdown_timeout }, 'shutting down: draining requests in flight');
    void (async () => {
      const { cut } = await outpost.shutdown();
      if (opts.onStopped) await opts.onStopped();
      log.info({ cut }, 'stopped');
      process.exit(0);
    })();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  return outpost;
}
