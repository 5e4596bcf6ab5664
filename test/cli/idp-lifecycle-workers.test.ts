// Sessions that follow the identity provider under outpost.workers: 2 (node:cluster), on each store
// several processes share — a real Redis (with a second Portcullis process beside it: another
// replica) and the embedded SQLite file. The real oidc-provider signs the user out and posts its
// back-channel logout token to whichever worker the primary hands the connection to: within a
// second every worker (and the replica) refuses that session. 50 parallel requests at token
// expiry, spread over the workers, cause exactly one refresh-token request at the IdP (the
// store's refresh lock holds across processes) and no logout.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { startIdentityProvider, DEMO_USERS, type RunningIdp } from '../../src/demo/identity-provider.js';
import { startUpstream, type RunningUpstream } from '../support/upstream.js';
import { freePort } from '../support/ports.js';
import { startRedis, type RunningRedis } from '../support/redis.js';
import { CookieJar, httpGet, loginThrough, submitThrough, type HttpResult } from '../support/browserless.js';
import { startPortcullis, type PortcullisProcess, type LogLine } from '../support/process.js';

const STORES = ['redis', 'embedded'] as const;
const TOKEN_TTL = 4;

for (const storeKind of STORES) describe(`IdP logout and refresh with workers sharing the ${storeKind} store`, () => {
const ALICE = { username: 'alice', password: 'alice' };
const WORKERS = 2;
const dir = mkdtempSync(join(tmpdir(), 'portcullis-idp-workers-'));
let idp: RunningIdp;
let upstream: RunningUpstream;
let redis: RunningRedis | undefined;
let port: number;
/** Redis only: a second Portcullis (another replica) on the same store. */
let replicaPort: number | undefined;
const procs: PortcullisProcess[] = [];

function config(listenPort: number, workers: number): string {
  const store = storeKind === 'redis' ? `{ type: redis, url: "${redis!.url}" }` : `{ type: embedded, path: ${JSON.stringify(join(dir, 'sessions.db'))} }`;
  return `outpost:
  listeners: { http: "127.0.0.1:${listenPort}", https: null }
  session_store: ${store}
  workers: ${workers}
  shutdown_timeout: 5
providers:
  - name: app
    issuer: ${idp.issuer}
    client_id: app
    client_secret: app-secret
    cookie_secret: ${'w'.repeat(32)}
    external_host: http://app.localtest:${port}
    internal_host: ${upstream.url}
`;
}

async function start(name: string, listenPort: number, workers: number): Promise<PortcullisProcess> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, config(listenPort, workers));
  const p = startPortcullis(file);
  procs.push(p);
  const listening = await p.waitFor((l) => l.msg === 'Portcullis is listening');
  if (workers > 1) assert.equal(listening.workers, workers);
  return p;
}

let main: PortcullisProcess;

before(async () => {
  port = await freePort();
  if (storeKind === 'redis') {
    redis = await startRedis();
    replicaPort = await freePort();
  }
  upstream = await startUpstream();
  idp = await startIdentityProvider({
    clients: [
      {
        client_id: 'app',
        client_secret: 'app-secret',
        redirect_uris: [`http://app.localtest:${port}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`],
        refresh_tokens: true,
        // The IdP posts to the listener's address, which is no provider's external_host.
        backchannel_logout_uri: `http://127.0.0.1:${port}/outpost.goauthentik.io/backchannel_logout`,
      },
    ],
    users: DEMO_USERS,
    idTokenTtlSeconds: TOKEN_TTL,
    accessTokenTtlSeconds: TOKEN_TTL,
  });
  main = await start('main', port, WORKERS);
  if (replicaPort !== undefined) await start('replica', replicaPort, 1);
});

after(async () => {
  for (const p of procs) if (p.child.exitCode === null) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await upstream.close();
  await idp.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const url = (path: string) => `http://app.localtest:${port}${path}`;

/** A request on a fresh connection to the main process (its primary deals it to a worker) or the replica. */
function ask(path: string, cookie: string, to: 'main' | 'replica' = 'main'): Promise<HttpResult> {
  const target = to === 'main' ? port : replicaPort!;
  return httpGet(`http://127.0.0.1:${target}${path}`, { headers: { host: `app.localtest:${port}`, cookie } });
}

function user(res: HttpResult): string | undefined {
  if (res.status !== 200) return undefined;
  return (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-authentik-username'];
}

/** The workers of the main process whose request log lines have a path starting with `prefix`. */
async function workersThatServed(prefix: string, count: number): Promise<Set<unknown>> {
  const lines = () => main.lines.filter((l: LogLine) => l.msg === 'request' && typeof l.path === 'string' && l.path.startsWith(prefix));
  for (let i = 0; i < 100 && lines().length < count; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(lines().length, count, `a log line per request under ${prefix}`);
  return new Set(lines().map((l) => l.worker));
}

async function login(): Promise<{ jar: CookieJar; cookie: string; at: number }> {
  const jar = new CookieJar();
  const at = Date.now();
  assert.equal((await loginThrough(url('/'), ALICE, { jar })).final.status, 200);
  return { jar, cookie: jar.header(new URL(url('/')))!, at };
}

test('signing out at the IdP: within a second every worker (and the other replica) refuses the session', async () => {
  const laptop = await login();
  const phone = await login(); // another IdP session of the same user
  for (let i = 0; i < 6; i++) assert.equal(user(await ask(`/in/${i}`, laptop.cookie)), 'alice');
  const deliveredBefore = idp.backchannelResults.length;

  await submitThrough(`${idp.issuer}/session/end`, { jar: laptop.jar });
  assert.deepEqual(idp.backchannelResults.slice(deliveredBefore), [{ clientId: 'app', ok: true }], 'the IdP delivered its logout token and got 200');
  const ended = Date.now();
  // Within a second: every worker refuses the laptop's cookie, on fresh connections.
  let round = 0;
  for (;;) {
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(`/out${round}/${i}`, laptop.cookie)));
    const replica = replicaPort === undefined ? [] : [await ask(`/out${round}/r`, laptop.cookie, 'replica')];
    if ([...answers, ...replica].every((r) => r.status === 302)) break;
    assert.ok(Date.now() - ended < 1000, 'the session is refused everywhere within a second');
    round++;
    await new Promise((r) => setTimeout(r, 50));
  }
  const refused = await Promise.all(Array.from({ length: 20 }, (_, i) => ask(`/refused/${i}`, laptop.cookie)));
  for (const res of refused) assert.equal(res.status, 302, 'the ended session is sent to login');
  assert.equal((await workersThatServed('/refused/', 20)).size, WORKERS, 'every worker refused it');
  assert.equal(upstream.requests.filter((r) => r.url.startsWith('/refused/')).length, 0, 'nothing reached the upstream');
  // The other IdP session of the same user goes on, on every worker.
  const still = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(`/phone/${i}`, phone.cookie)));
  for (const res of still) assert.equal(user(res), 'alice');
  assert.equal((await workersThatServed('/phone/', 10)).size, WORKERS);
});

test('50 parallel requests at token expiry over the workers: exactly one refresh-token request, no logout', async () => {
  const s = await login();
  const before = idp.refreshes;
  assert.equal(user(await ask('/fresh', s.cookie)), 'alice');
  assert.equal(idp.refreshes, before, 'fresh tokens are not refreshed');
  await new Promise((r) => setTimeout(r, Math.max(0, s.at + TOKEN_TTL * 1000 + 300 - Date.now())));
  const answers = await Promise.all(
    Array.from({ length: 50 }, (_, i) => ask(`/burst/${i}`, s.cookie, replicaPort !== undefined && i % 5 === 4 ? 'replica' : 'main')),
  );
  const now = Date.now() / 1000;
  for (const res of answers) {
    assert.equal(user(res), 'alice', `no logout: ${res.status} ${String(res.headers.location ?? '')}`);
    const jwt = (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-authentik-jwt']!;
    assert.ok(decodeJwt(jwt).exp! > now, 'X-authentik-jwt is never an expired token');
  }
  assert.equal(idp.refreshes - before, 1, 'exactly one refresh-token request reached the IdP');
  const burstOnMain = answers.filter((_, i) => !(replicaPort !== undefined && i % 5 === 4)).length;
  assert.equal((await workersThatServed('/burst/', burstOnMain)).size, WORKERS, 'the burst was spread over every worker');
});
});
