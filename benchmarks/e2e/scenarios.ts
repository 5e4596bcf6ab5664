// The end-to-end scenarios of issue 5, run interleaved (1 2 3 … 1 2 3 …) against one upstream
// with one load generator, same connections and duration; medians and ratios to the bare proxy.
import http2 from 'node:http2';
import https from 'node:https';
import { httpGet } from '../../test/support/browserless.js';
import { startNodeServer, type Child } from '../lib/proc.js';
import { h2loadAvailable, runLoad, type Generator, type H2loadSpec, type LoadResult } from '../lib/load.js';
import { median } from '../lib/stats.js';
import { startEnv, startPortcullis, startPortcullisService, startExpress, login, type Env } from './env.js';
import { nginxBinary, startNginx } from './nginx.js';
import { apacheAvailable, startApache } from './apache.js';
import { goAvailable, startGoProxy } from './go.js';

export interface ScenarioDef {
  id: number;
  key: string;
  label: string;
}

export const SCENARIOS: readonly ScenarioDef[] = [
  { id: 1, key: 'upstream', label: 'upstream directly (ceiling)' },
  { id: 2, key: 'bare-proxy', label: 'bare @fastify/http-proxy' },
  { id: 3, key: 'proxy-auth', label: 'Portcullis proxy, authenticated' },
  { id: 4, key: 'proxy-allowlisted', label: 'Portcullis proxy, allowlisted path' },
  { id: 5, key: 'auth-nginx', label: 'Portcullis auth/nginx decision' },
  { id: 6, key: 'hello', label: 'Fastify hello world' },
  { id: 7, key: 'express', label: 'express + express-openid-connect + http-proxy-middleware' },
  { id: 8, key: 'nginx', label: 'nginx proxy_pass' },
  { id: 9, key: 'hello-identity', label: 'Fastify hello world + the same identity headers as 5' },
  { id: 10, key: 'go-bare', label: 'Go httputil.ReverseProxy, bare (1 core)' },
  { id: 11, key: 'go-session', label: 'Go ReverseProxy + oauth2-proxy-style cookie session (1 core)' },
  { id: 12, key: 'apache-openidc', label: 'Apache httpd + mod_auth_openidc, authenticated' },
  { id: 13, key: 'workers-1', label: 'Portcullis proxy, authenticated, as the CLI runs it: workers: 1 (SQLite store)' },
  { id: 14, key: 'workers-2', label: 'the same, workers: 2 (primary + 2 worker processes sharing the SQLite file)' },
  { id: 15, key: 'h2-1conn', label: 'Portcullis proxy, authenticated, HTTPS listener, HTTP/2: 1 connection × N streams' },
  { id: 16, key: 'h2-nconn', label: 'the same, HTTP/2: N connections × 1 stream' },
  { id: 17, key: 'h1-tls', label: 'the same, HTTP/1.1 over TLS: N connections' },
  { id: 18, key: 'proxy-floor', label: 'floor of 3: a Fastify route + one undici dispatch with the upstream headers of 3, no decision' },
];

/** The HTTPS scenarios (15-17) are loaded by h2load with N = --connections. */
export const TLS_SCENARIOS = [15, 16, 17] as const;

function labelFor(def: ScenarioDef, connections: number): string {
  return (TLS_SCENARIOS as readonly number[]).includes(def.id) ? def.label.replace(/\bN\b/g, String(connections)) : def.label;
}

export interface E2EOptions {
  scenarios: number[];
  rounds: number;
  durationSec: number;
  warmupSec: number;
  connections: number;
  generator: Generator;
  /** Extra Node flags for the Portcullis children (e.g. --cpu-prof). */
  portcullisNodeArgs?: string[];
  /** Log level of the Portcullis processes (default silent, like the other servers). */
  portcullisLogLevel?: string;
  log: (line: string) => void;
}

export interface ScenarioResult extends ScenarioDef {
  status: 'ok' | 'skipped';
  note?: string;
  rounds: LoadResult[];
  rps?: number;
  p50Ms?: number;
  p99Ms?: number;
  /** Median of the rounds' mean latency (h2load reports no percentiles). */
  meanMs?: number;
  peakRssMb?: number;
  /** Median over rounds of this scenario's req/s divided by the bare proxy's in the same round. */
  ratioToBare?: number;
  /** Median over rounds of the server's CPU time (its whole process tree) per request, µs. */
  cpuUsPerReq?: number;
  errors?: number;
  /** The pid of the server measured (to match its CPU profile with --cpu-prof). */
  pid?: number;
  /** When each measured round ran: CLOCK_MONOTONIC µs (process.hrtime, V8's profile clock on Linux). */
  windowsUs?: [number, number][];
}

interface Target {
  def: ScenarioDef;
  server: Child;
  url: string;
  headers: Record<string, string>;
  /** Loaded by h2load with these settings instead of the run's generator (15-17). */
  h2load?: H2loadSpec;
  /** A probe of its own (TLS): the status of one request over the scenario's protocol. */
  probe?: () => Promise<number>;
}

/**
 * One request over TLS, the way h2load sends it (connect to `connectTo`, SNI and authority from
 * the URL, certificate not checked: Portcullis's self-signed one); status and body.
 */
async function tlsGet(url: string, connectTo: string, headers: Record<string, string>, h1: boolean): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const [host, port] = [connectTo.slice(0, connectTo.lastIndexOf(':')), Number(connectTo.slice(connectTo.lastIndexOf(':') + 1))];
  const extra = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'host'));
  if (h1) {
    return new Promise((resolve, reject) => {
      const req = https.get({ host, port, servername: u.hostname, path: u.pathname + u.search, headers: { ...extra, host: u.host }, rejectUnauthorized: false, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
    });
  }
  const session = http2.connect(`https://${u.host}`, { host, port, servername: u.hostname, rejectUnauthorized: false });
  try {
    return await new Promise((resolve, reject) => {
      session.on('error', reject);
      const req = session.request({ ':path': u.pathname + u.search, ':authority': u.host, ...extra });
      let status = 0;
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (d: string) => (body += d));
      req.on('end', () => resolve({ status, body }));
      req.on('error', reject);
      req.end();
    });
  } finally {
    session.close();
  }
}

const PATH = '/app/data';

export async function runE2E(opts: E2EOptions): Promise<ScenarioResult[]> {
  const want = new Set(opts.scenarios);
  const env = await startEnv({
    portcullis: [
      ...(want.has(3) || want.has(4) ? [{ name: 'app', mode: 'proxy' as const }] : []),
      ...(want.has(5) ? [{ name: 'fwd', mode: 'forward_single' as const }] : []),
      ...(want.has(13) ? [{ name: 'w1', mode: 'proxy' as const, workers: 1 }] : []),
      ...(want.has(14) ? [{ name: 'w2', mode: 'proxy' as const, workers: 2 }] : []),
      ...(TLS_SCENARIOS.some((id) => want.has(id)) && h2loadAvailable() ? [{ name: 'tls', mode: 'proxy' as const, https: true }] : []),
    ],
    express: want.has(7),
    apache: want.has(12) && apacheAvailable(),
  });
  try {
    return await runIn(env, opts);
  } finally {
    await env.close();
  }
}

async function runIn(env: Env, opts: E2EOptions): Promise<ScenarioResult[]> {
  const log = opts.log;
  const want = new Set(opts.scenarios);
  const up = env.upstream;
  const upPort = up.info.port as number;
  const targets: Target[] = [];
  /** The identity headers of the decision answer (scenario 5), replayed by scenario 9. */
  let decisionHeaders: Record<string, string> | null = null;
  /** What the upstream received from Portcullis in scenario 3 (for the floor, 18). */
  let upstreamHeaders: Record<string, string> | null = null;
  const results = new Map<number, ScenarioResult>();
  const def = (id: number) => SCENARIOS.find((s) => s.id === id)!;
  const skip = (id: number, note: string) => {
    log(`  scenario ${id} skipped: ${note}`);
    results.set(id, { ...def(id), label: labelFor(def(id), opts.connections), status: 'skipped', note, rounds: [] });
  };
  const local = (port: unknown, path = PATH) => `http://127.0.0.1:${port}${path}`;

  if (want.has(1)) targets.push({ def: def(1), server: up, url: local(upPort), headers: {} });
  if (want.has(2)) {
    const s = await startNodeServer('bare-proxy', 'bare-proxy', { upstream: env.upstreamUrl });
    env.children.push(s);
    targets.push({ def: def(2), server: s, url: local(s.info.port), headers: {} });
  }
  if (want.has(3) || want.has(4)) {
    const s = await startPortcullis(env, 'app', opts.portcullisNodeArgs, opts.portcullisLogLevel);
    const host = `app.localtest:${s.info.port}`;
    if (want.has(3)) {
      log('  logging in to Portcullis (proxy mode) through the OIDC flow…');
      const cookie = await login(`http://${host}${PATH}`, host);
      const echo = await httpGet(`http://${host}/__echo`, { headers: { cookie } });
      const seen = echo.status === 200 ? (JSON.parse(echo.body) as { headers: Record<string, string> }).headers : {};
      if (seen['x-authentik-username'] !== 'alice') throw new Error(`proxy-auth probe: upstream did not see the identity headers (status ${echo.status})`);
      targets.push({ def: def(3), server: s, url: local(s.info.port), headers: { host, cookie } });
      upstreamHeaders = Object.fromEntries(Object.entries(seen).filter(([k]) => !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k)));
    }
    if (want.has(4)) targets.push({ def: def(4), server: s, url: local(s.info.port, '/public/data'), headers: { host } });
  }
  if (want.has(5)) {
    const s = await startPortcullis(env, 'fwd', opts.portcullisNodeArgs, opts.portcullisLogLevel);
    const host = `fwd.localtest:${s.info.port}`;
    const original = `http://${host}${PATH}`;
    const decision = `/outpost.goauthentik.io/auth/nginx`;
    const anon = await httpGet(`http://${host}${decision}`, { headers: { 'x-original-url': original } });
    if (anon.status !== 401) {
      skip(5, `the auth/nginx endpoint is not available yet (anonymous probe got ${anon.status}, expected 401); the scenario runs as soon as it exists`);
    } else {
      log('  logging in to Portcullis (forward_single) through the OIDC flow…');
      const cookie = await login(`http://${host}/outpost.goauthentik.io/start?rd=${encodeURIComponent(original)}`, host);
      const headers = { host, cookie, 'x-original-url': original };
      const probe = await httpGet(`http://${host}${decision}`, { headers });
      if (probe.status !== 200 || probe.headers['x-authentik-username'] !== 'alice') skip(5, `authenticated decision probe got ${probe.status} without X-authentik-username`);
      else {
        targets.push({ def: def(5), server: s, url: local(s.info.port, decision), headers });
        decisionHeaders = Object.fromEntries(Object.entries(probe.headers).filter(([k]) => k.startsWith('x-authentik-') || k === 'user-agent').map(([k, v]) => [k, String(v)]));
      }
    }
  }
  if (want.has(9)) {
    if (!decisionHeaders) skip(9, 'needs scenario 5 (its answer headers)');
    else {
      const s = await startNodeServer('hello-identity', 'hello', { headers: decisionHeaders });
      env.children.push(s);
      targets.push({ def: def(9), server: s, url: local(s.info.port), headers: {} });
    }
  }
  if (want.has(18)) {
    if (!upstreamHeaders) skip(18, 'needs scenario 3 (the headers its upstream receives)');
    else {
      const s = await startNodeServer('proxy-floor', 'proxy-floor', { upstream: env.upstreamUrl, headers: upstreamHeaders });
      env.children.push(s);
      targets.push({ def: def(18), server: s, url: local(s.info.port), headers: {} });
    }
  }
  if (want.has(6)) {
    const s = await startNodeServer('hello', 'hello', {});
    env.children.push(s);
    targets.push({ def: def(6), server: s, url: local(s.info.port), headers: {} });
  }
  if (want.has(7)) {
    const s = await startExpress(env);
    const host = `express.localtest:${s.info.port}`;
    log('  logging in to express-openid-connect through the OIDC flow…');
    const cookie = await login(`http://${host}${PATH}`, host);
    const echo = await httpGet(`http://${host}/__echo`, { headers: { cookie } });
    const seen = echo.status === 200 ? (JSON.parse(echo.body) as { headers: Record<string, string> }).headers : {};
    if (seen['x-authentik-username'] !== 'alice') throw new Error(`express probe: upstream did not see the identity headers (status ${echo.status})`);
    targets.push({ def: def(7), server: s, url: local(s.info.port), headers: { host, cookie } });
  }
  if (want.has(8)) {
    if (!nginxBinary()) skip(8, 'nginx is not installed');
    else {
      const s = await startNginx(upPort);
      env.children.push(s);
      targets.push({ def: def(8), server: s, url: local(s.info.port), headers: {} });
    }
  }

  for (const [id, mode] of [[10, 'bare'], [11, 'session']] as const) {
    if (!want.has(id)) continue;
    if (!goAvailable()) {
      skip(id, 'Go is not installed (Debian golang-go)');
      continue;
    }
    const s = await startGoProxy(upPort, mode);
    env.children.push(s);
    let headers: Record<string, string> = {};
    if (mode === 'session') {
      const minted = await httpGet(local(s.info.port, '/__mint'));
      const set = minted.headers['set-cookie'];
      const cookie = (Array.isArray(set) ? set[0] : set)?.split(';')[0];
      if (!cookie) throw new Error(`go-session: no cookie from /__mint (status ${minted.status})`);
      headers = { cookie };
      const refused = await httpGet(local(s.info.port));
      if (refused.status !== 401) throw new Error(`go-session: a request without the cookie answered ${refused.status}, not 401`);
    }
    targets.push({ def: def(id), server: s, url: local(s.info.port), headers });
  }
  if (want.has(12)) {
    if (!env.apache) skip(12, 'Apache or mod_auth_openidc is not installed (Debian apache2, libapache2-mod-auth-openidc)');
    else {
      const host = `apache.localtest:${env.apache.port}`;
      const s = await startApache({ port: env.apache.port, upstreamPort: upPort, issuer: env.idp.issuer, clientId: 'client-apache', clientSecret: env.apache.clientSecret, host: 'apache.localtest' });
      env.children.push(s);
      log('  logging in to Apache + mod_auth_openidc through the OIDC flow…');
      // mod_auth_openidc answers 401 instead of redirecting unless the client accepts HTML.
      const cookie = await login(`http://${host}${PATH}`, host, undefined, { accept: 'text/html' });
      const echo = await httpGet(`http://${host}/__echo`, { headers: { cookie } });
      const seen = echo.status === 200 ? (JSON.parse(echo.body) as { headers: Record<string, string> }).headers : {};
      if (seen['oidc_claim_preferred_username'] !== 'alice') throw new Error(`apache probe: upstream did not see the identity headers (status ${echo.status})`);
      targets.push({ def: def(12), server: s, url: local(s.info.port), headers: { host, cookie } });
    }
  }

  for (const [id, name] of [[13, 'w1'], [14, 'w2']] as const) {
    if (!want.has(id)) continue;
    const s = await startPortcullisService(env, name);
    const host = `${name}.localtest:${s.info.port}`;
    log(`  logging in to Portcullis (${name}: workers ${env.portcullis.get(name)!.workers}) through the OIDC flow…`);
    const cookie = await login(`http://${host}${PATH}`, host);
    // Every worker must know the session (a shared store): fresh connections land on each in turn.
    for (let i = 0; i < 8; i++) {
      const echo = await httpGet(`http://${host}/__echo`, { headers: { cookie, connection: 'close' } });
      const seen = echo.status === 200 ? (JSON.parse(echo.body) as { headers: Record<string, string> }).headers : {};
      if (seen['x-authentik-username'] !== 'alice') throw new Error(`${name} probe ${i}: upstream did not see the identity headers (status ${echo.status})`);
    }
    targets.push({ def: def(id), server: s, url: local(s.info.port), headers: { host, cookie } });
  }

  const tlsWanted = TLS_SCENARIOS.filter((id) => want.has(id));
  if (tlsWanted.length > 0) {
    if (!h2loadAvailable()) for (const id of tlsWanted) skip(id, 'h2load is not installed (Debian nghttp2-client)');
    else {
      const s = await startPortcullis(env, 'tls', opts.portcullisNodeArgs, opts.portcullisLogLevel);
      // The provider's external_host is the HTTP listener's (the login runs there, over plain
      // HTTP); the HTTPS listener serves the same provider for that host name.
      const host = `tls.localtest:${s.info.port}`;
      const connectTo = `127.0.0.1:${s.info.httpsPort}`;
      log('  logging in to Portcullis (the TLS instance) through the OIDC flow…');
      const cookie = await login(`http://${host}${PATH}`, host);
      const n = opts.connections;
      const loads: Record<number, H2loadSpec> = {
        15: { clients: 1, streams: n, h1: false, connectTo },
        16: { clients: n, streams: 1, h1: false, connectTo },
        17: { clients: n, streams: 1, h1: true, connectTo },
      };
      for (const id of tlsWanted) {
        const load = loads[id]!;
        const echo = await tlsGet(`https://${host}/__echo`, connectTo, { cookie }, load.h1);
        const seen = echo.status === 200 ? (JSON.parse(echo.body) as { headers: Record<string, string> }).headers : {};
        if (seen['x-authentik-username'] !== 'alice') throw new Error(`scenario ${id} probe: upstream did not see the identity headers over ${load.h1 ? 'HTTP/1.1' : 'HTTP/2'} (status ${echo.status})`);
        const url = `https://${host}${PATH}`;
        targets.push({ def: def(id), server: s, url, headers: { cookie }, h2load: load, probe: async () => (await tlsGet(url, connectTo, { cookie }, load.h1)).status });
      }
    }
  }

  // Every target must answer 200 before it is measured (wrk counts 3xx as success).
  for (const t of targets) {
    if (t.probe) {
      const status = await t.probe();
      if (status !== 200) throw new Error(`scenario ${t.def.id} (${t.def.key}) probe answered ${status}`);
      continue;
    }
    const res = await httpGet(t.url.replace('127.0.0.1', t.headers.host?.split(':')[0] ?? '127.0.0.1'), { headers: t.headers });
    if (res.status !== 200) throw new Error(`scenario ${t.def.id} (${t.def.key}) probe answered ${res.status}`);
  }

  for (const t of targets) results.set(t.def.id, { ...t.def, label: labelFor(t.def, opts.connections), status: 'ok', rounds: [] });
  if (opts.warmupSec > 0) {
    log(`  warm-up: ${opts.warmupSec}s per scenario`);
    for (const t of targets) await runLoad(opts.generator, { url: t.url, headers: t.headers, connections: opts.connections, durationSec: opts.warmupSec, h2load: t.h2load });
  }
  for (let r = 1; r <= opts.rounds; r++) {
    for (const t of targets) {
      const cpu0 = t.server.cpu();
      const from = Number(process.hrtime.bigint() / 1000n);
      const res = await runLoad(opts.generator, { url: t.url, headers: t.headers, connections: opts.connections, durationSec: opts.durationSec, h2load: t.h2load });
      res.cpuUsPerReq = ((t.server.cpu() - cpu0) * 1e6) / Math.max(1, res.requests);
      const result = results.get(t.def.id)!;
      result.rounds.push(res);
      (result.windowsUs ??= []).push([from, Number(process.hrtime.bigint() / 1000n)]);
      if (res.errors > res.requests * 0.001) throw new Error(`scenario ${t.def.id} (${t.def.key}): ${res.errors} of ${res.requests} responses were not 200`);
      log(`  round ${r}/${opts.rounds}  ${String(t.def.id).padStart(1)} ${t.def.key.padEnd(18)} ${res.rps.toFixed(0).padStart(7)} req/s  ${Number.isFinite(res.p50Ms) ? `p50 ${res.p50Ms.toFixed(2)} ms  p99 ${res.p99Ms.toFixed(2)} ms` : `mean ${res.meanMs?.toFixed(2)} ms`}  CPU ${res.cpuUsPerReq.toFixed(1)} µs/req${res.errors ? `  errors ${res.errors}` : ''}`);
    }
  }
  // Verify once more after the load: still authenticated, still 200.
  for (const t of targets) {
    if (t.probe) {
      const status = await t.probe();
      if (status !== 200) throw new Error(`scenario ${t.def.id} (${t.def.key}) answered ${status} after the load`);
      continue;
    }
    const res = await httpGet(t.url.replace('127.0.0.1', t.headers.host?.split(':')[0] ?? '127.0.0.1'), { headers: t.headers });
    if (res.status !== 200) throw new Error(`scenario ${t.def.id} (${t.def.key}) answered ${res.status} after the load`);
  }

  const bare = results.get(2);
  for (const t of targets) {
    const s = results.get(t.def.id)!;
    s.rps = median(s.rounds.map((x) => x.rps));
    s.p50Ms = median(s.rounds.map((x) => x.p50Ms));
    s.p99Ms = median(s.rounds.map((x) => x.p99Ms));
    const means = s.rounds.map((x) => x.meanMs ?? NaN).filter(Number.isFinite);
    if (means.length > 0) s.meanMs = median(means);
    s.errors = s.rounds.reduce((a, x) => a + x.errors, 0);
    s.cpuUsPerReq = median(s.rounds.map((x) => x.cpuUsPerReq ?? NaN).filter(Number.isFinite));
    s.peakRssMb = t.server.rss().hwm / 2 ** 20;
    s.pid = t.server.pid;
    if (bare && bare.rounds.length === s.rounds.length) s.ratioToBare = median(s.rounds.map((x, i) => x.rps / bare.rounds[i]!.rps));
  }
  // Scenarios 3 and 4 share one process: its peak RSS is reported for both.
  return SCENARIOS.filter((s) => results.has(s.id)).map((s) => results.get(s.id)!);
}
