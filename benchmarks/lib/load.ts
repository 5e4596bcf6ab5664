// The load generator: wrk when installed (one thread, so that the server under test keeps a
// core), else autocannon in-process. Same connections and duration for every scenario.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Generator = 'wrk' | 'autocannon';

/** h2load's own settings for one scenario (HTTP/2 against HTTP/1.1 on the TLS listener). */
export interface H2loadSpec {
  /** Connections (h2load -c). */
  clients: number;
  /** Concurrent streams per connection (h2load -m); 1 for HTTP/1.1. */
  streams: number;
  /** HTTP/1.1 over TLS (h2load --h1) instead of h2. */
  h1: boolean;
  /** host:port to connect to instead of the URL's authority (h2load --connect-to). */
  connectTo: string;
}

export interface LoadSpec {
  url: string;
  headers: Record<string, string>;
  connections: number;
  durationSec: number;
  /** Rotate the Cookie header over these values, one per request (memory scenario). */
  cookies?: string[];
  /** Load this scenario with h2load instead of the run's generator (connections/streams its own). */
  h2load?: H2loadSpec;
}

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Mean latency, when the generator reports no percentiles (h2load). */
  meanMs?: number;
  requests: number;
  /** Responses with status >= 400 plus socket errors (wrk counts 3xx as success; probes check status). */
  errors: number;
  /** CPU time of the server under test per request, µs (set by the scenario runner from /proc). */
  cpuUsPerReq?: number;
}

export function detectGenerator(forced?: string): Generator {
  if (forced === 'wrk' || forced === 'autocannon') return forced;
  return spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error ? 'autocannon' : 'wrk';
}

export async function runLoad(gen: Generator, spec: LoadSpec): Promise<LoadResult> {
  if (spec.h2load) return runH2load(spec, spec.h2load);
  return gen === 'wrk' ? runWrk(spec) : runAutocannon(spec);
}

/** Debian's nghttp2-client; PORTCULLIS_H2LOAD names another (the harness test names a missing one). */
export const h2loadBinary = () => process.env.PORTCULLIS_H2LOAD ?? '/usr/bin/h2load';

export function h2loadAvailable(): boolean {
  return !spawnSync(h2loadBinary(), ['--version'], { stdio: 'ignore' }).error;
}

/**
 * h2load's summary: req/s, the requests done and their status codes. It reports no latency
 * percentiles, only min/max/mean of "time for request": the mean is given as p50 is not known.
 */
export function parseH2load(out: string): LoadResult {
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  if (!Number.isFinite(rps) || !req || !codes) throw new Error(`could not parse h2load output:\n${out}`);
  const done = Number(req[3]);
  // Status codes also count answers that arrived after the duration ended: compare the others.
  const notOk = Number(codes[2]) + Number(codes[3]) + Number(codes[4]);
  const mean = /time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s)\s/.exec(out);
  return { rps, p50Ms: NaN, p99Ms: NaN, meanMs: mean ? toMs(mean[1]!, mean[2]!) : NaN, requests: done, errors: notOk + Number(req[5]) + Number(req[6]) + Number(req[7]) };
}

async function runH2load(spec: LoadSpec, h: H2loadSpec): Promise<LoadResult> {
  const args = ['-c', String(h.clients), '-m', String(h.streams), '-t', '1', '-D', String(spec.durationSec), '--connect-to', h.connectTo];
  if (h.h1) args.push('--h1');
  // h2load sends the URL's authority as :authority (h2) or Host (h1); other headers as given.
  for (const [k, v] of Object.entries(spec.headers)) if (k.toLowerCase() !== 'host') args.push('-H', `${k}: ${v}`);
  args.push(spec.url);
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(h2loadBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), (spec.durationSec + 30) * 1000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(text);
      else reject(new Error(`h2load exited with ${code}:\n${text}`));
    });
  });
  // h2load ends 0 even when it could not negotiate the protocol asked for: check it did.
  const want = h.h1 ? 'http/1.1' : 'h2';
  if (!out.includes(`Application protocol: ${want}\n`)) throw new Error(`h2load did not speak ${want}:\n${out}`);
  const parsed = parseH2load(out);
  if ((parsed.errors > 0 || process.env.BENCH_DEBUG === 'all') && process.env.BENCH_DEBUG) process.stderr.write(out);
  return parsed;
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

export function parseWrk(out: string): LoadResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const lat = (pct: string) => {
    const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  // The rotating-cookie script counts every status other than 200 itself (3xx included).
  const non200 = /Non-200 responses: (\d+)/.exec(out);
  const non2xx = non200 ? Number(non200[1]) : Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  if (!Number.isFinite(rps)) throw new Error(`could not parse wrk output:\n${out}`);
  return { rps, p50Ms: lat('50'), p99Ms: lat('99'), requests, errors: non2xx + sockErrors };
}

async function runWrk(spec: LoadSpec): Promise<LoadResult> {
  const args = ['-t1', `-c${spec.connections}`, `-d${spec.durationSec}s`, '--latency', '--timeout', '10s'];
  // wrk adds its own `Host` unless a header spelled exactly `Host` is given (Lua tables are
  // case-sensitive): a lower-case `host` would be sent twice, in random order.
  for (const [k, v] of Object.entries(spec.headers)) args.push('-H', `${k.toLowerCase() === 'host' ? 'Host' : k}: ${v}`);
  let dir: string | undefined;
  if (spec.cookies && spec.cookies.length > 0) {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-wrk-'));
    const list = join(dir, 'cookies.txt');
    writeFileSync(list, spec.cookies.join('\n') + '\n');
    const script = join(dir, 'rotate.lua');
    writeFileSync(
      script,
      `local cookies = {}
for line in io.lines(${JSON.stringify(list)}) do if #line > 0 then cookies[#cookies + 1] = line end end
local i = math.random(#cookies)
request = function()
  i = i + 1
  if i > #cookies then i = 1 end
  wrk.headers["Cookie"] = cookies[i]
  return wrk.format()
end
bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("bad") or 0) end
  io.write(string.format("Non-200 responses: %d\\n", total))
end
`,
    );
    args.push('-s', script);
  }
  args.push(spec.url);
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), (spec.durationSec + 30) * 1000);
      child.on('error', reject);
      child.on('exit', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(text);
        else reject(new Error(`wrk exited with ${code}:\n${text}`));
      });
    });
    if (spec.cookies && !/Non-200 responses: \d+/.test(out)) throw new Error(`the wrk script did not run:\n${out}`);
    const parsed = parseWrk(out);
    if ((parsed.errors > 0 || process.env.BENCH_DEBUG === 'all') && process.env.BENCH_DEBUG) process.stderr.write(out);
    return parsed;
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

async function runAutocannon(spec: LoadSpec): Promise<LoadResult> {
  const { default: autocannon } = (await import('autocannon')) as unknown as { default: (o: object) => Promise<AutocannonResult> };
  let i = 0;
  const cookies = spec.cookies;
  const opts: Record<string, unknown> = { url: spec.url, connections: spec.connections, duration: spec.durationSec, headers: spec.headers };
  if (cookies && cookies.length > 0) {
    opts.requests = [
      {
        setupRequest: (req: { headers: Record<string, string> }) => {
          i = (i + 1) % cookies.length;
          return { ...req, headers: { ...req.headers, cookie: cookies[i]! } };
        },
      },
    ];
  }
  const r = await autocannon(opts);
  return { rps: r.requests.average, p50Ms: r.latency.p50, p99Ms: r.latency.p99, requests: r.requests.total, errors: r.errors + r.non2xx };
}

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  errors: number;
  non2xx: number;
}
