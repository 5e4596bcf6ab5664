// Per-stage benchmarks: every stage built by `Outpost.create` (the same DI container, config
// loader and providers as production) and run without a server on a RequestContext made by the
// outpost's own context factory. mitata measures; ns/op and ops/s are reported.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measure, do_not_optimize } from 'mitata';
import { pino, type Logger as PinoLogger } from 'pino';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { EmbeddedSessionStore } from '../../src/sessions/embedded-store.js';
import { RedisSessionStore } from '../../src/sessions/redis-store.js';
import { startRedis, REDIS_BIN, type RunningRedis } from '../../test/support/redis.js';
import type { RequestContext, Stage } from '../../src/pipeline/contract.js';
import { runStages } from '../../src/pipeline/chain.js';
import { runToExit } from '../../src/pipeline/exits.js';
import type { SessionRecord, SessionStore } from '../../src/sessions/store.js';
import type { Logger } from '../../src/pipeline/logger.js';
import { compileMappings, compileAccessRules } from '../../src/mappings/index.js';
import { buildIdentityHeaders } from '../../src/plugins/headers/stage.js';
import { createDispatcher } from '../../src/plugins/upstream/plugin.js';
import type { UpstreamExit } from '../../src/plugins/upstream/exit.js';
import { isAllowlisted, compileAllowlist } from '../../src/plugins/allowlist/stage.js';
import { startIdentityProvider } from '../../src/demo/identity-provider.js';
import { startNodeServer } from '../lib/proc.js';
import { stringify } from 'yaml';

export interface StageRow {
  group: string;
  name: string;
  nsPerOp: number;
  opsPerSec: number;
  p99Ns: number;
  /** The issue's target for this row, in ns, when it has one. */
  targetNs?: number;
  /** A size, not a time (memory per session): shown instead of time/op. */
  bytes?: number;
  /** Not measured, and why (a tool that is not installed). */
  skipped?: string;
  /**
   * This process's CPU time per operation (process.cpuUsage over a loop): unlike mitata's wall
   * time it does not grow when the machine is oversubscribed and the process waits for a core;
   * for an async operation it leaves out the wait for the other process (Redis). It includes the
   * process's other threads (the garbage collector's helpers): an allocating operation shows more.
   */
  cpuNsPerOp?: number;
}

/**
 * What a row's target is judged on: the smaller of wall time and CPU time per operation. Both are
 * upper bounds of the operation's own cost on its thread: wall time includes waiting for a core
 * of a busy machine, the process's CPU time includes the garbage collector's helper threads.
 */
export function judgedNs(row: StageRow): number {
  return row.cpuNsPerOp !== undefined && Number.isFinite(row.cpuNsPerOp) ? Math.min(row.cpuNsPerOp, row.nsPerOp) : row.nsPerOp;
}

/** CPU ns per call of `fn`, over at least `cpuMs` of this process's CPU time (awaiting it when it returns a promise). */
async function cpuPerOp(fn: () => unknown, cpuMs: number): Promise<number> {
  const cpu = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  const start = cpu();
  let n = 0;
  while (cpu() - start < cpuMs * 1000) {
    for (let i = 0; i < 64; i++) {
      const out = fn();
      if (out instanceof Promise) await out;
      else do_not_optimize(out);
    }
    n += 64;
  }
  return ((cpu() - start) * 1000) / n;
}

export interface StageOptions {
  /** Short measurements (smoke test). */
  quick?: boolean;
  /** Only rows whose group contains one of these strings. */
  filter?: string[];
  log: (line: string) => void;
}

/** `count` realistic, distinct skip_path_regex lines; the last one matches `/assets/v99/app.js`. */
export function allowlistPatterns(count: number): string[] {
  const kinds = [
    (i: number) => `^/public${i}/`,
    (i: number) => `^/api/v${i}/health$`,
    (i: number) => `^/static/[a-z0-9]+\\.v${i}\\.(css|js|png)$`,
    (i: number) => `^/share/${i}/[A-Za-z0-9_-]{8,}$`,
    (i: number) => `^/\\.well-known/acme-${i}/`,
  ];
  const out: string[] = [];
  for (let i = 0; i < count - 1; i++) out.push(kinds[i % kinds.length]!(i));
  out.push('^/assets/v\\d+/[^/]+\\.js$');
  return out;
}

const PROVIDER_HOSTS = { a1: 1, a10: 10, a100: 100 } as const;

function sessionRecord(provider: string, additional: number): SessionRecord {
  const extra: [string, string][] = [];
  for (let i = 0; i < additional; i++) extra.push([`x-team-attr-${i}`, `value-${i}-${'v'.repeat(12)}`]);
  const jwt = `eyJhbGciOiJSUzI1NiJ9.${randomBytes(600).toString('base64url')}.${randomBytes(256).toString('base64url')}`;
  return {
    id: randomBytes(32).toString('base64url'),
    provider,
    userKey: 'http://idp\u0000alice',
    createdAt: Date.now(),
    expiresAt: Date.now() + 3_600_000,
    claims: {
      sub: 'f3c2a1', iss: 'http://idp', preferred_username: 'alice', email: 'alice@example.com', name: 'Alice Demo',
      groups: ['admins', 'staff', 'engineering', 'on-call'], entitlements: ['reports:read', 'reports:write'], email_verified: true,
      ak_proxy: { user_attributes: { additionalHeaders: Object.fromEntries(extra) } },
    },
    idToken: jwt,
    accessToken: undefined,
    proxy: { additionalHeaders: extra },
  };
}

const BROWSER_HEADERS = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'accept-language': 'en-GB,en;q=0.9',
  'accept-encoding': 'gzip, deflate, br',
  connection: 'keep-alive',
  referer: 'https://app.localtest/reports',
};

export async function runStageBenches(opts: StageOptions): Promise<StageRow[]> {
  const log = opts.log;
  const rows: StageRow[] = [];
  const mopts = opts.quick ? { min_cpu_time: 20e6, max_samples: 200, warmup_samples: 2 } : {};
  const want = (group: string) => !opts.filter || opts.filter.some((f) => group.includes(f));
  async function bench(group: string, name: string, fn: () => unknown, targetNs?: number): Promise<void> {
    if (!want(group)) return;
    const s = await measure(fn, mopts);
    const cpuNs = await cpuPerOp(fn, opts.quick ? 10 : 100);
    const row: StageRow = { group, name, nsPerOp: s.avg, opsPerSec: 1e9 / s.avg, p99Ns: s.p99, cpuNsPerOp: cpuNs, ...(targetNs ? { targetNs } : {}) };
    rows.push(row);
    const judged = judgedNs(row);
    log(`  ${group.padEnd(10)} ${name.padEnd(58)} ${fmtNs(s.avg).padStart(10)}/op ${fmtOps(row.opsPerSec).padStart(12)} ops/s  CPU ${fmtNs(cpuNs).padStart(9)}/op${targetNs ? (judged <= targetNs ? '  (target met)' : `  (target ${fmtNs(targetNs)} missed)`) : ''}`);
  }

  const idp = await startIdentityProvider({ clients: [] });
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-stagebench-'));
  let upstream: Awaited<ReturnType<typeof startNodeServer>> | undefined;
  let outpost: Outpost | undefined;
  try {
    const provider = (name: string, extra: Record<string, unknown>) => ({
      name,
      issuer: idp.issuer,
      client_id: `client-${name}`,
      client_secret: 'bench-secret',
      cookie_secret: randomBytes(24).toString('base64url'),
      external_host: `https://${name}.localtest`,
      mode: 'proxy',
      internal_host: 'http://127.0.0.1:9',
      ...extra,
    });
    upstream = await startNodeServer('stage-upstream', 'upstream', {});
    const upstreamUrl = `http://127.0.0.1:${upstream.info.port}`;
    const config = {
      outpost: { name: 'bench outpost', listeners: { http: null, https: null }, log_level: 'silent' },
      providers: [
        provider('app', {
          internal_host: upstreamUrl,
          access_rules: [
            { name: 'verified', when: 'claims.email_verified == true' },
            { name: 'admins', paths: ['^/admin(/|$)'], when: '"admins" in claims.groups' },
            { name: 'reports', paths: ['^/reports(/|$)'], when: '"reports:read" in claims.entitlements' },
          ],
        }),
        ...Object.entries(PROVIDER_HOSTS).map(([name, n]) => provider(name, { skip_path_regex: allowlistPatterns(n).join('\n') })),
        { ...provider('fwd', { mode: 'forward_single' }), internal_host: undefined },
      ],
    };
    const parsed = parseConfig(stringify(config), { source: 'stage bench config', baseDir: dir });
    const silent = pino({ level: 'silent' });
    // Memory-only store: the same class as production, without the journal file.
    const store = new EmbeddedSessionStore({ path: null, keys: new Map(), log: silent as unknown as Logger });
    outpost = await Outpost.create(parsed, { logger: silent, store });
    await Promise.all(outpost.providers.all.map((p) => p.oidc.ready()));
    const stage = (name: string): Stage => outpost!.stages.find((b) => b.stage.name === name)!.stage;
    const ctxFor = (host: string, path: string, headers: Record<string, string> = {}): RequestContext => {
      const built = outpost!.doors.context({ method: 'GET', url: path, headers: { host, ...BROWSER_HEADERS, ...headers }, socket: { remoteAddress: '127.0.0.1' } }, 'bench-request');
      if ('kind' in built) throw new Error(`context for ${host}${path}: ${built.status}`);
      return built;
    };
    const app = outpost.providers.all.find((p) => p.name === 'app')!;
    const session = sessionRecord('app', 10);
    await store.put(session);
    const cookieValue = encodeURIComponent(app.sessionCodec.encode({ s: session.id }));
    const cookieHeader = `theme=dark; ${app.cookieName}=${cookieValue}; _ga=GA1.2.123456789.987654321`;

    // --- allowlist -------------------------------------------------------------------------
    const allowlist = stage('allowlist');
    for (const [name, n] of Object.entries(PROVIDER_HOSTS)) {
      const ctx = ctxFor(`${name}.localtest`, '/assets/v3/app.js');
      await bench('allowlist', `stage, ${n} pattern${n > 1 ? 's' : ''} (RE2), match on the last`, () => {
        ctx.allowlisted = false;
        return allowlist.run(ctx);
      }, n === 100 ? 2000 : undefined);
    }
    for (const n of [1, 10, 100]) {
      const patterns = allowlistPatterns(n);
      const js = patterns.map((p) => new RegExp(p));
      const jsAlternation = new RegExp(patterns.map((p) => `(?:${p})`).join('|'));
      const list = compileAllowlist(outpost.providers.all.find((p) => p.name === `a${n}`)!);
      const ctx = ctxFor(`a${n}.localtest`, '/assets/v3/app.js');
      await bench('allowlist', `${n} pattern${n > 1 ? 's' : ''}: RE2 alternation (what the stage runs)`, () => isAllowlisted(list, ctx));
      await bench('allowlist', `${n} pattern${n > 1 ? 's' : ''}: JS RegExp alternation, same patterns (reference)`, () => jsAlternation.test(ctx.target.path));
      await bench('allowlist', `${n} pattern${n > 1 ? 's' : ''}: JS RegExp, one test per line (reference)`, () => {
        const path = ctx.target.path;
        for (let i = 0; i < js.length; i++) if (js[i]!.test(path)) return true;
        return false;
      });
    }

    // --- session decode (auth stage) --------------------------------------------------------
    const auth = stage('auth');
    {
      const ctx = ctxFor('app.localtest', '/reports/2024', { cookie: cookieHeader });
      await bench('session', 'auth stage: cookie → session (warm: id cache hit)', () => {
        ctx.session = null;
        return auth.run(ctx);
      }, 10_000);
      const fresh: string[] = [];
      for (let i = 0; i < 2000; i++) fresh.push(app.sessionCodec.encode({ s: session.id }));
      let i = 0;
      await bench('session', 'cookie decrypt (first request of a cookie: secretbox)', () => {
        i = (i + 1) % fresh.length;
        return app.sessionCodec.decode(fresh[i]!);
      }, 10_000);
      const anon = ctxFor('app.localtest', '/reports/2024');
      await bench('session', 'auth stage: no cookie (anonymous)', () => auth.run(anon));
    }

    // --- access rules (access_rules stage) --------------------------------------------------
    const accessRules = stage('access_rules');
    {
      const ctx = ctxFor('app.localtest', '/reports/2024');
      ctx.session = session;
      await bench('access', 'access_rules stage: 3 rules, 2 apply (CEL)', () => accessRules.run(ctx));
      const admin = ctxFor('app.localtest', '/admin/users');
      admin.session = session;
      await bench('access', 'access_rules stage: 3 rules, admin path', () => accessRules.run(admin));
      const rules = compileAccessRules([{ name: 'admins', paths: ['^/admin(/|$)'], when: '"admins" in claims.groups' }]);
      await bench('access', 'compileAccessRules(1 rule).check, no path match', () => rules.check('/reports/2024', session.claims));
    }

    // --- header building --------------------------------------------------------------------
    const headers = stage('headers');
    {
      const ctx = ctxFor('app.localtest', '/reports/2024', { cookie: cookieHeader });
      ctx.session = session;
      await bench('headers', 'headers stage: standard set + 10 additionalHeaders', () => headers.run(ctx), 1000);
      const anon = ctxFor('app.localtest', '/public/x');
      await bench('headers', 'headers stage: anonymous (client headers only)', () => headers.run(anon));
      const p = app;
      const policy = { outpostName: 'bench outpost', version: 'portcullis/bench' };
      await bench('headers', 'buildIdentityHeaders (first request of a session)', () => buildIdentityHeaders(session, p, policy));
    }

    // --- mappings at login ------------------------------------------------------------------
    {
      const compiled = compileMappings([
        { name: 'team headers', expression: '{"ak_proxy": {"user_attributes": {"additionalHeaders": {"X-Team": "platform", "X-User": claims.preferred_username}}}}' },
        { name: 'per-user backend', expression: '{"ak_proxy": {"backend_override": "http://backend-" + claims.preferred_username + ":8080"}}' },
        { name: 'roles', expression: '{"roles": claims.groups.filter(g, g.startsWith("a"))}' },
      ]);
      const input = {
        claims: session.claims as Record<string, unknown>,
        request: { host: 'app.localtest', path: '/reports', headers: { ...BROWSER_HEADERS } },
        provider: { name: 'app', slug: 'app' },
      };
      await bench('mappings', 'compileMappings(3).evaluate (once per login)', () => compiled.evaluate(input));
      const none = compileMappings([]);
      await bench('mappings', 'compileMappings(0).evaluate (claims copy only)', () => none.evaluate(input));
    }

    // --- upstream ---------------------------------------------------------------------------
    const up = outpost.exits.get('upstream') as UpstreamExit;
    {
      const ctx = ctxFor('app.localtest', '/reports/2024', { cookie: cookieHeader });
      ctx.session = session;
      headers.run(ctx);
      up.finish(ctx);
      const reqHeaders = ctx.upstreamHeaders!.slice();
      // The exit appends Host to the header list; without one it only chooses the target.
      ctx.upstreamHeaders = null;
      await bench('upstream', 'upstream stage: choose target', () => up.finish(ctx));
      if (want('upstream')) {
        const dispatcher = createDispatcher(up, up.transport);
        const roundTrip = async () => {
          const res = await dispatcher.request({ origin: ctx.upstream!.origin, path: ctx.target.path, method: 'GET', headers: reqHeaders });
          do_not_optimize(await res.body.arrayBuffer());
        };
        await roundTrip();
        await bench('upstream', 'round trip through the stage dispatcher (local server, serial)', roundTrip);
        await dispatcher.close();
      }
    }

    // --- the whole chain: context + every stage, as a request runs it (no server) -----------
    if (want('chain')) {
      const stages = outpost.stages.map((b) => b.stage);
      const doors = outpost.doors;
      const fwd = outpost.providers.byName('fwd')!;
      const fwdSession = { ...sessionRecord('fwd', 10), id: 'fwd-session' };
      await store.put(fwdSession);
      const fwdCookie = `${fwd.cookieName}=${encodeURIComponent(fwd.sessionCodec.encode({ s: fwdSession.id }))}`;
      const run = (req: Parameters<typeof doors.context>[0]) => {
        const ctx = doors.context(req, 'bench-request');
        if ('kind' in ctx) throw new Error(`chain bench: ${ctx.status}`);
        return runToExit(stages, doors.exit(ctx), ctx);
      };
      const proxyReq = { method: 'GET', url: '/reports/2024?x=1', headers: { host: 'app.localtest', ...BROWSER_HEADERS, cookie: cookieHeader }, socket: { remoteAddress: '127.0.0.1' } };
      const decisionReq = {
        method: 'GET',
        url: '/outpost.goauthentik.io/auth/nginx',
        headers: { host: 'fwd.localtest', 'x-original-url': 'https://fwd.localtest/reports/2024?x=1', ...BROWSER_HEADERS, cookie: fwdCookie },
        socket: { remoteAddress: '127.0.0.1' },
      };
      const probe = run(decisionReq) as { kind: string; status?: number };
      if (probe.kind !== 'respond' || probe.status !== 200) throw new Error(`chain bench: decision answered ${probe.status}`);
      await bench('chain', 'proxy request: context only', () => doors.context(proxyReq, 'bench-request'));
      await bench('chain', 'proxy request, authenticated: context + all stages', () => run(proxyReq));
      await bench('chain', 'auth/nginx decision, authenticated: context + all stages', () => run(decisionReq));
    }

    // --- session stores: the lookup on every request, and memory per session ------------------
    if (want('store')) await storeBenches(parsed, bench, (row) => {
      rows.push(row);
      log(`  ${row.group.padEnd(10)} ${row.name.padEnd(58)} ${row.skipped ? `skipped: ${row.skipped}` : fmtBytes(row.bytes!).padStart(10)}`);
    }, dir, silent);
  } finally {
    await outpost?.close().catch(() => undefined);
    await upstream?.stop().catch(() => undefined);
    await idp.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

type Bench = (group: string, name: string, fn: () => unknown, targetNs?: number) => Promise<void>;

/**
 * The SQLite store (a file) and the Redis store (a local redis-server): get() with the record
 * cached (the row version / stored value seen before) and uncached (read + decrypt every time),
 * the authenticated proxy chain on each (its per-session header caches hit with both), and the
 * memory each session costs: bytes on disk or in Redis, and heap for the cached record.
 */
async function storeBenches(parsed: ReturnType<typeof parseConfig>, bench: Bench, report: (row: StageRow) => void, dir: string, silent: PinoLogger): Promise<void> {
  const log = silent as unknown as Logger;
  const keys = new Map([['app', randomBytes(32)]]);
  // Redis rows need a real redis-server (Debian redis-server); without one they say so.
  const redis: RunningRedis | null = existsSync(REDIS_BIN) ? await startRedis() : null;
  const noRedis = `redis-server is not installed (${REDIS_BIN}; Debian redis-server)`;
  const skipped = (group: string, name: string) => report({ group, name, nsPerOp: NaN, opsPerSec: NaN, p99Ns: NaN, skipped: noRedis });
  const size = (group: string, name: string, bytes: number) => report({ group, name, nsPerOp: 0, opsPerSec: 0, p99Ns: 0, bytes });
  const opened: SessionStore[] = [];
  const open = async <T extends SessionStore>(s: T): Promise<T> => {
    await s.open();
    opened.push(s);
    return s;
  };
  const outposts: Outpost[] = [];
  try {
    const dbPath = join(dir, 'bench-sessions.db');
    const sqlite = await open(new EmbeddedSessionStore({ path: dbPath, keys, log }));
    const sqliteCold = await open(new EmbeddedSessionStore({ path: dbPath, keys, log, recordCacheSize: 0 }));
    const session = sessionRecord('app', 10);
    await sqlite.put(session);
    await bench('store', 'SQLite get(): row version read, record cached (hit)', () => sqlite.get(session.id));
    await bench('store', 'SQLite get(): row read + decrypt (miss)', () => sqliteCold.get(session.id));
    await bench('store', 'SQLite get(): unknown id', () => sqlite.get('no-such-session'));
    if (redis) {
      const red = await open(new RedisSessionStore({ url: redis.url, keys, log, keyPrefix: 'bench:' }));
      const redCold = await open(new RedisSessionStore({ url: redis.url, keys, log, keyPrefix: 'bench:', recordCacheSize: 0 }));
      await red.put(session);
      await bench('store', 'Redis get(): GET, record cached (hit)', () => red.get(session.id));
      await bench('store', 'Redis get(): GET + decrypt (miss)', () => redCold.get(session.id));
    } else {
      skipped('store', 'Redis get(): GET, record cached (hit)');
      skipped('store', 'Redis get(): GET + decrypt (miss)');
    }

    // The authenticated proxy request through every stage, with each store behind the auth stage.
    // Outpost.create opens (and close() closes) the store it is given: one of their own.
    const chainStores: [string, SessionStore | null][] = [
      ['SQLite', new EmbeddedSessionStore({ path: dbPath, keys, log })],
      ['Redis', redis ? new RedisSessionStore({ url: redis.url, keys, log, keyPrefix: 'bench:' }) : null],
    ];
    for (const [name, store] of chainStores) {
      const label = `proxy request, authenticated, ${name} store: context + all stages`;
      if (!store) {
        skipped('store', label);
        continue;
      }
      const o = await Outpost.create(parsed, { logger: silent, store });
      outposts.push(o);
      const app = o.providers.all.find((p) => p.name === 'app')!;
      const cookie = `${app.cookieName}=${encodeURIComponent(app.sessionCodec.encode({ s: session.id }))}`;
      const stages = o.stages.map((b) => b.stage);
      const req = { method: 'GET', url: '/reports/2024?x=1', headers: { host: 'app.localtest', ...BROWSER_HEADERS, cookie }, socket: { remoteAddress: '127.0.0.1' } };
      const run = () => {
        const ctx = o.doors.context(req, 'bench-request');
        if ('kind' in ctx) throw new Error(`store bench: ${ctx.status}`);
        // The chain without the exit: the proxy exit would only choose the target.
        return runStages(stages, ctx);
      };
      const probe = (await run()) as { kind: string };
      if (probe.kind !== 'continue') throw new Error(`store bench: the ${name} chain answered ${probe.kind}`);
      await bench('store', label, run);
    }

    // Memory per session: N logins into fresh stores.
    const n = 300;
    const gc = exposeGc();
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const memPath = join(dir, 'bench-memory.db');
    const memSqlite = await open(new EmbeddedSessionStore({ path: memPath, keys, log }));
    const memRedis = redis ? await open(new RedisSessionStore({ url: redis.url, keys, log, keyPrefix: 'mem:' })) : null;
    const records = Array.from({ length: n }, () => sessionRecord('app', 10));
    const usedMemory = async (store: RedisSessionStore) => Number(/used_memory:(\d+)/.exec(await (store as unknown as { client: { info(s: string): Promise<string> } }).client.info('memory'))![1]);
    const redisBefore = memRedis ? await usedMemory(memRedis) : 0;
    for (const r of records) await memSqlite.put(r);
    if (memRedis) for (const r of records) await memRedis.put(r);
    const redisAfter = memRedis ? await usedMemory(memRedis) : 0;
    const fileBytes = () => statSync(memPath).size + (existsSync(memPath + '-wal') ? statSync(memPath + '-wal').size : 0);
    await memSqlite.close(); // checkpoints the WAL into the file
    opened.splice(opened.indexOf(memSqlite), 1);
    const reopened = await open(new EmbeddedSessionStore({ path: memPath, keys, log }));
    size('store mem', `SQLite file, per session (${n} sessions, after checkpoint)`, fileBytes() / n);
    if (memRedis) size('store mem', `Redis used_memory, per session (${n} sessions)`, (redisAfter - redisBefore) / n);
    else skipped('store mem', `Redis used_memory, per session (${n} sessions)`);
    for (const [name, store] of [['SQLite', reopened], ['Redis', memRedis]] as const) {
      if (!store) {
        skipped('store mem', `${name} process heap per cached record (Portcullis side)`);
        continue;
      }
      const before = heap();
      const kept: unknown[] = [];
      for (const r of records) kept.push(await store.get(r.id));
      const after = heap();
      do_not_optimize(kept);
      size('store mem', `${name} process heap per cached record (Portcullis side)`, Math.max(0, after - before) / n);
    }
  } finally {
    for (const o of outposts) await o.close().catch(() => undefined);
    for (const s of opened) await s.close().catch(() => undefined);
    await redis?.stop();
  }
}

/** global.gc without starting node with --expose-gc. */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

export function fmtBytes(b: number): string {
  if (b < 1024) return `${b.toFixed(0)} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(2)} KB`;
  return `${(b / 1024 / 1024).toFixed(2)} MB`;
}

export function fmtNs(ns: number): string {
  if (ns < 1000) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1000).toFixed(2)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

export function fmtOps(ops: number): string {
  if (ops >= 1e6) return `${(ops / 1e6).toFixed(2)} M`;
  if (ops >= 1e3) return `${(ops / 1e3).toFixed(1)} k`;
  return ops.toFixed(0);
}
