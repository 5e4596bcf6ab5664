// The memory scenario: one fresh Portcullis process, N distinct sessions made through the real
// OIDC flow (the IdP's own session is reused, so each login is the full redirect + code exchange
// at Portcullis without the password form), then a sustained load rotating over every session's
// cookie. RSS is sampled once a second; the growth during the load is what should stay flat.
import { CookieJar } from '../../test/support/browserless.js';
import { runLoad, type Generator } from '../lib/load.js';
import { median } from '../lib/stats.js';
import { startEnv, startPortcullis, login } from './env.js';

export interface MemoryOptions {
  sessions: number;
  durationSec: number;
  connections: number;
  concurrency: number;
  generator: Generator;
  log: (line: string) => void;
}

export interface MemoryResult {
  sessions: number;
  loginSeconds: number;
  loginsPerSecond: number;
  durationSec: number;
  rssBaselineMb: number;
  rssAfterLoginsMb: number;
  /** Median RSS of the first 3 samples of the sustained load. */
  rssLoadStartMb: number;
  /** Median RSS of the last 3 samples. */
  rssLoadEndMb: number;
  rssPeakMb: number;
  growthDuringLoadMb: number;
  bytesPerSession: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** Live heap after a full GC, just before and just after the sustained load. */
  heapBeforeLoadMb: number;
  heapAfterLoadMb: number;
  samples: { t: number; rssMb: number }[];
}

const MB = 2 ** 20;

export async function runMemory(opts: MemoryOptions): Promise<MemoryResult> {
  const log = opts.log;
  const env = await startEnv({ portcullis: [{ name: 'mem', mode: 'proxy' }], express: false });
  try {
    // --expose-gc: the live heap is read after a full collection before and after the load.
    const server = await startPortcullis(env, 'mem', ['--expose-gc']);
    const host = `mem.localtest:${server.info.port}`;
    const url = `http://127.0.0.1:${server.info.port}/app/data`;
    // Warm the process up (JIT, pools) before the baseline.
    await runLoad(opts.generator, { url: `http://127.0.0.1:${server.info.port}/public/x`, headers: { host }, connections: opts.connections, durationSec: 2 });
    const rssBaseline = server.rss().rss;

    log(`  logging in ${opts.sessions} sessions through the OIDC flow (${opts.concurrency} at a time)…`);
    const cookies: string[] = [];
    const started = Date.now();
    let next = 0;
    let lastReport = Date.now();
    const worker = async () => {
      const jar = new CookieJar();
      while (next < opts.sessions) {
        next++;
        cookies.push(await login(`http://${host}/app/data`, host, jar));
        if (Date.now() - lastReport > 5000) {
          lastReport = Date.now();
          log(`    ${cookies.length}/${opts.sessions} sessions, ${(cookies.length / ((Date.now() - started) / 1000)).toFixed(0)} logins/s, RSS ${(server.rss().rss / MB).toFixed(1)} MB`);
        }
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, worker));
    const loginSeconds = (Date.now() - started) / 1000;
    const live = Number((await server.ask({ op: 'sessions' })).sessions);
    if (live < opts.sessions) throw new Error(`expected ${opts.sessions} sessions in the store, found ${live}`);
    const rssAfterLogins = server.rss().rss;
    log(`  ${live} sessions in ${loginSeconds.toFixed(1)} s; RSS ${(rssBaseline / MB).toFixed(1)} → ${(rssAfterLogins / MB).toFixed(1)} MB`);

    const heapBefore = Number((await server.ask({ op: 'heap' })).heapUsed);
    log(`  sustained load: ${opts.durationSec}s, ${opts.connections} connections, rotating over ${cookies.length} session cookies`);
    const samples: { t: number; rssMb: number }[] = [];
    const t0 = Date.now();
    const sampler = setInterval(() => samples.push({ t: (Date.now() - t0) / 1000, rssMb: server.rss().rss / MB }), 1000);
    let load;
    try {
      load = await runLoad(opts.generator, { url, headers: { host }, connections: opts.connections, durationSec: opts.durationSec, cookies });
    } finally {
      clearInterval(sampler);
    }
    const heapAfter = Number((await server.ask({ op: 'heap' })).heapUsed);
    log(`  live heap after a full GC: ${(heapBefore / MB).toFixed(1)} MB before the load, ${(heapAfter / MB).toFixed(1)} MB after`);
    const first = samples.slice(0, 3).map((s) => s.rssMb);
    const last = samples.slice(-3).map((s) => s.rssMb);
    const start = median(first);
    const end = median(last);
    return {
      sessions: live,
      loginSeconds,
      loginsPerSecond: live / loginSeconds,
      durationSec: opts.durationSec,
      rssBaselineMb: rssBaseline / MB,
      rssAfterLoginsMb: rssAfterLogins / MB,
      rssLoadStartMb: start,
      rssLoadEndMb: end,
      rssPeakMb: server.rss().hwm / MB,
      growthDuringLoadMb: end - start,
      bytesPerSession: (rssAfterLogins - rssBaseline) / live,
      rps: load.rps,
      p50Ms: load.p50Ms,
      p99Ms: load.p99Ms,
      errors: load.errors,
      heapBeforeLoadMb: heapBefore / MB,
      heapAfterLoadMb: heapAfter / MB,
      samples,
    };
  } finally {
    await env.close();
  }
}
