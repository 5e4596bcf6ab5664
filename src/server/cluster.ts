// Several processes serving one outpost (`outpost.workers` > 1), with node:cluster.
//
// The primary reads and validates the config, forks the workers and sends each the config text;
// the workers share the listening sockets (the primary hands out connections round-robin) and
// the session store (which must be shared: Redis). The primary owns the process's lifecycle:
//   SIGHUP            validates the file, then every worker reloads it; if one cannot, those that
//                     did go back to the old text, so all serve the same config
//   SIGTERM, SIGINT   every worker drains (Outpost.shutdown), then the primary exits 0; a second
//                     signal ends the workers at once
//   a worker dies     a new one replaces it (after a growing pause if they keep dying)
// and serves `outpost.metrics.listen`: every worker's metrics, aggregated (prom-client's
// AggregatorRegistry), and its own (reloads, worker restarts).
import cluster, { type Worker } from 'node:cluster';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { pino, type Logger as PinoLogger } from 'pino';
import { AggregatorRegistry, Counter, Registry } from 'prom-client';
import { parseConfig, ConfigError, type ConfigIssue, type PortcullisConfig } from '../config/index.js';
import { REDACT_PATHS } from '../pipeline/logger.js';
import { Outpost, restartOnlyChanges, splitListen } from './outpost.js';
import { ReloadMetrics } from './metrics.js';
import { listenerUrl, oneLine, readConfig, ReloadTrigger, SIGNAL_EXIT, type ServiceOptions } from './service.js';
import { workerCount } from './workers.js';
import { VERSION_STRING } from '../version.js';

/** The config as the workers get it: its text, parsed by each worker as the primary did. */
interface ConfigText {
  text: string;
  source: string;
  baseDir: string;
}

type ToWorker = { type: 'portcullis:start'; config: ConfigText } | { type: 'portcullis:reload'; id: number; config: ConfigText } | { type: 'portcullis:shutdown' };

type FromWorker =
  | { type: 'portcullis:hello' }
  | { type: 'portcullis:ready'; addresses: Record<string, AddressInfo | undefined> }
  | { type: 'portcullis:failed'; error: SerializedError }
  | { type: 'portcullis:reloaded'; id: number; error?: string }
  | { type: 'portcullis:stopped'; cut: number };

interface SerializedError {
  name: string;
  message: string;
  code?: string;
  source?: string;
  issues?: ConfigIssue[];
}

function serializeError(err: unknown): SerializedError {
  if (err instanceof ConfigError) return { name: err.name, message: err.message, source: err.source, issues: err.issues };
  const e = err as Error & { code?: string };
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err), ...(e?.code ? { code: e.code } : {}) };
}

function deserializeError(s: SerializedError): Error {
  if (s.issues && s.source !== undefined) return new ConfigError(s.source, s.issues);
  const err = new Error(s.message) as Error & { code?: string };
  err.name = s.name;
  if (s.code) err.code = s.code;
  return err;
}

/** The worker entry module next to this one (`.ts` under tsx, `.js` once compiled). */
function workerEntry(): string {
  const here = fileURLToPath(import.meta.url);
  return here.replace(/cluster\.(ts|js)$/, (_m, ext: string) => `worker-entry.${ext}`);
}

/** A replaced worker waits longer each time workers keep dying (100 ms, doubling, at most 30 s). */
const RESTART_WINDOW_MS = 60_000;

export async function runPrimary(opts: ServiceOptions & { configText: ConfigText }): Promise<void> {
  let config = opts.config;
  let current = opts.configText;
  const count = workerCount(config);
  const log: PinoLogger = pino({ level: config.outpost.log_level, redact: REDACT_PATHS, base: { outpost: config.outpost.name, worker: 0 } });
  const registry = new Registry();
  const reloads = new ReloadMetrics(registry);
  const restarts = new Counter({ name: 'portcullis_worker_restarts_total', help: 'Workers that died and were replaced.', registers: [registry] });
  const aggregator = new AggregatorRegistry();

  cluster.setupPrimary({ exec: workerEntry(), args: [], execArgv: process.execArgv });
  let stopping = false;
  const recentDeaths: number[] = [];
  let started = false;
  let reloadSeq = 0;
  const pendingReloads = new Map<number, { waiting: Set<number>; failures: { worker: number; error: string }[]; done: () => void }>();
  let stoppedCut = 0;

  const fork = (): Worker => {
    const worker = cluster.fork();
    worker.on('message', (msg: FromWorker) => {
      // Sent once its message listener is attached: a message sent earlier would be lost.
      if (msg.type === 'portcullis:hello') worker.send({ type: 'portcullis:start', config: current } satisfies ToWorker);
      else if (msg.type === 'portcullis:reloaded') {
        const pending = pendingReloads.get(msg.id);
        if (!pending) return;
        pending.waiting.delete(worker.id);
        if (msg.error !== undefined) pending.failures.push({ worker: worker.id, error: msg.error });
        if (pending.waiting.size === 0) pending.done();
      } else if (msg.type === 'portcullis:stopped') {
        stoppedCut += msg.cut;
      }
    });
    return worker;
  };

  /** Waits for a forked worker's first answer: listening, or why it could not start. */
  const whenReady = (worker: Worker) =>
    new Promise<Record<string, AddressInfo | undefined>>((resolve, reject) => {
      const onMessage = (msg: FromWorker) => {
        if (msg.type === 'portcullis:ready') done(() => resolve(msg.addresses));
        else if (msg.type === 'portcullis:failed') done(() => reject(deserializeError(msg.error)));
      };
      const onExit = (code: number | null, signal: string | null) => done(() => reject(new Error(`worker ${worker.id} exited during start-up (${signal ?? code})`)));
      const done = (then: () => void) => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        then();
      };
      worker.on('message', onMessage);
      worker.once('exit', onExit);
    });

  const killAll = () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
  };

  // The first worker alone: a config that cannot be served fails once, before any other starts.
  let addresses: Record<string, AddressInfo | undefined>;
  try {
    addresses = await whenReady(fork());
    await Promise.all(Array.from({ length: count - 1 }, () => whenReady(fork())));
  } catch (err) {
    killAll();
    throw err;
  }
  started = true;

  cluster.on('exit', (worker, code, signal) => {
    if (stopping || !started) return;
    const now = Date.now();
    recentDeaths.push(now);
    while (recentDeaths.length > 0 && recentDeaths[0]! < now - RESTART_WINDOW_MS) recentDeaths.shift();
    const delay = Math.min(30_000, 100 * 2 ** (recentDeaths.length - 1));
    restarts.inc();
    log.error({ exited: worker.id, code, signal, restart_in_ms: delay }, 'worker exited; starting a replacement');
    setTimeout(() => {
      if (stopping) return;
      const replacement = fork();
      whenReady(replacement).then(
        () => log.info({ replaced: worker.id, by: replacement.id }, 'replacement worker ready'),
        (err: unknown) => log.error({ err: oneLine(err) }, 'replacement worker could not start'),
      );
    }, delay).unref();
  });

  let metricsServer: Server | null = null;
  const metricsListen = config.outpost.metrics?.listen;
  if (metricsListen) {
    metricsServer = await serveMetrics(metricsListen, async () => (await aggregator.clusterMetrics()) + (await registry.metrics()), aggregator.contentType, log);
  }
  log.info({ http: listenerUrl('http', addresses.http), https: listenerUrl('https', addresses.https), workers: count, version: VERSION_STRING }, 'Portcullis is listening');

  const broadcastReload = (next: ConfigText) =>
    new Promise<{ worker: number; error: string }[]>((resolve) => {
      const id = ++reloadSeq;
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
      const pending = { waiting: new Set(workers.map((w) => w.id)), failures: [] as { worker: number; error: string }[], done: () => {} };
      const timer = setTimeout(() => {
        for (const w of pending.waiting) pending.failures.push({ worker: w, error: 'no answer within 30 s' });
        pending.done();
      }, 30_000);
      pending.done = () => {
        clearTimeout(timer);
        pendingReloads.delete(id);
        resolve(pending.failures);
      };
      pendingReloads.set(id, pending);
      if (workers.length === 0) return pending.done();
      for (const w of workers) w.send({ type: 'portcullis:reload', id, config: next } satisfies ToWorker);
    });

  const path = opts.configPath;
  const trigger = new ReloadTrigger(async (why) => {
    if (path === undefined) {
      log.warn({ why }, 'reload: there is no config file to read again (demo)');
      return;
    }
    try {
      const { text, config: next } = readConfig(path);
      const fixed = restartOnlyChanges(config, next);
      if (fixed.length > 0) throw new ConfigError(path, fixed);
      // Everything a start would build, contacting nothing: most mistakes never reach a worker.
      const probe = await Outpost.create(next, { checkOnly: true, logger: pino({ level: 'silent' }) });
      await probe.close();
      const nextText: ConfigText = { text, source: current.source, baseDir: current.baseDir };
      const failures = await broadcastReload(nextText);
      if (failures.length > 0) {
        // All workers serve one config: those that switched go back.
        await broadcastReload(current);
        throw new Error(`worker ${failures[0]!.worker}: ${failures[0]!.error}`);
      }
      current = nextText;
      config = next;
      reloads.record(true);
      trigger.watch(config.outpost.watch_config ? path : null);
      log.info({ why, providers: config.providers.length, workers: Object.keys(cluster.workers ?? {}).length }, 'config reloaded');
    } catch (err) {
      reloads.record(false);
      log.error({ why, err: oneLine(err) }, 'reload failed: the running config keeps serving');
    }
  });
  if (path !== undefined && config.outpost.watch_config) trigger.watch(path);
  process.on('SIGHUP', () => trigger.request('SIGHUP'));

  const stop = (signal: 'SIGINT' | 'SIGTERM') => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      killAll();
      process.exit(SIGNAL_EXIT[signal]);
    }
    stopping = true;
    trigger.close();
    const timeout = config.outpost.shutdown_timeout;
    log.info({ signal, timeout_s: timeout }, 'shutting down: draining requests in flight');
    void (async () => {
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
      const exits = workers.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
      for (const w of workers) if (w.isConnected()) w.send({ type: 'portcullis:shutdown' } satisfies ToWorker);
      // A worker that does not exit after its own deadline (plus the store's close) is ended.
      const overdue = setTimeout(killAll, (timeout + 10) * 1000);
      await Promise.all(exits);
      clearTimeout(overdue);
      if (metricsServer) await new Promise<void>((resolve) => metricsServer!.close(() => resolve()));
      if (opts.onStopped) await opts.onStopped();
      log.info({ cut: stoppedCut }, 'stopped');
      process.exit(0);
    })();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function serveMetrics(listen: string, collect: () => Promise<string>, contentType: string, log: PinoLogger): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'content-length': '10' });
      res.end('Not found\n');
      return;
    }
    collect().then(
      (body) => {
        res.writeHead(200, { 'content-type': contentType, 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: Error) => {
        log.error({ err: err.message }, 'metrics: collection from the workers failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('Metrics collection failed\n');
      },
    );
  });
  const { host, port } = splitListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  log.info({ metrics: server.address() }, 'Prometheus metrics at /metrics (every worker, aggregated)');
  return server;
}

/** A cluster worker: waits for its config from the primary, serves, reloads and drains when told. */
export function runWorker(): void {
  const id = cluster.worker?.id ?? 0;
  let outpost: Outpost | null = null;
  let stopping = false;
  const send = (msg: FromWorker) => {
    if (process.connected) process.send!(msg);
  };
  const parse = (c: ConfigText): PortcullisConfig => parseConfig(c.text, { source: c.source, baseDir: c.baseDir });

  const stop = (why: string) => {
    if (stopping) {
      // A second signal (Ctrl-C twice reaches every process of the group): exit at once.
      if (why === 'SIGINT' || why === 'SIGTERM') process.exit(SIGNAL_EXIT[why]);
      return;
    }
    stopping = true;
    void (async () => {
      const result = outpost ? await outpost.shutdown() : { cut: 0 };
      send({ type: 'portcullis:stopped', cut: result.cut });
      process.exit(0);
    })();
  };

  process.on('message', (msg: ToWorker) => {
    if (msg.type === 'portcullis:start') {
      void (async () => {
        try {
          const config = parse(msg.config);
          outpost = await Outpost.create(config, { metricsListener: false, logBindings: { worker: id, pid: process.pid } });
          if (outpost.metrics) {
            // The primary asks every worker for its registry (prom-client's cluster protocol).
            AggregatorRegistry.setRegistries([outpost.metrics.registry]);
            new AggregatorRegistry();
          }
          const addresses = await outpost.listen();
          outpost.log.info({ http: addresses.http, https: addresses.https }, 'worker ready');
          send({ type: 'portcullis:ready', addresses: { http: addresses.http, https: addresses.https } });
        } catch (err) {
          send({ type: 'portcullis:failed', error: serializeError(err) });
          process.exit(1);
        }
      })();
    } else if (msg.type === 'portcullis:reload') {
      void (async () => {
        try {
          if (!outpost) throw new Error('not started');
          await outpost.reload(parse(msg.config));
          send({ type: 'portcullis:reloaded', id: msg.id });
        } catch (err) {
          send({ type: 'portcullis:reloaded', id: msg.id, error: oneLine(err) });
        }
      })();
    } else if (msg.type === 'portcullis:shutdown') {
      stop('primary');
    }
  });
  // The primary reloads every worker on SIGHUP; one sent to the whole process group must not end a worker.
  process.on('SIGHUP', () => undefined);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The primary is gone: nobody would hand this worker connections or replace it.
  process.on('disconnect', () => stop('primary gone'));
  send({ type: 'portcullis:hello' });
}
