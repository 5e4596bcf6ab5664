// Two outpost replicas sharing sessions through a real Redis: a login on one is a login on both,
// a sign-out on one is a sign-out on both, a restart keeps sessions, and a Redis outage fails
// closed (5xx, never the upstream) until Redis is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parse, stringify } from 'yaml';
import { startStack, quietLogger, freePort, type Stack } from '../support/stack.js';
import { startRedis, type RunningRedis } from '../support/redis.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';

const APP = 'app.localtest';
const ALICE = { username: 'alice', password: 'alice' };

let redis: RunningRedis;
let stack: Stack;
let replicaB: Outpost;
let portB: number;

/** The host both replicas serve (a load balancer in front of them would send this Host). */
const publicHost = () => `${APP}:${stack.port}`;

/** One request to replica A or B with the given Cookie header (no jar: the cookie stays as it is). */
function ask(replica: 'A' | 'B', path: string, cookie?: string): Promise<HttpResult> {
  const port = replica === 'A' ? stack.port : portB;
  return httpGet(`http://${APP}:${port}${path}`, { headers: { host: publicHost(), ...(cookie ? { cookie } : {}) } });
}

function username(res: HttpResult): string | undefined {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 200)}`);
  return (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-authentik-username'];
}

function isLoginRedirect(res: HttpResult): boolean {
  return res.status === 302 && String(res.headers.location).includes('/outpost.goauthentik.io/start?rd=');
}

/** Logs in through replica A; returns the Cookie header a browser would send afterwards. */
async function login(): Promise<string> {
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(APP, '/'), ALICE, { jar });
  assert.equal(username(final), 'alice');
  const cookie = jar.header(new URL(stack.url(APP, '/')));
  assert.ok(cookie, 'a session cookie was set');
  return cookie;
}

before(async () => {
  redis = await startRedis();
  stack = await startStack({
    providers: [{ name: 'app', host: APP }],
    outpost: { session_store: { type: 'redis', url: redis.url, key_prefix: 'e2e:' } },
  });
  // Replica B: the same configuration (providers, secrets, Redis), another listener.
  portB = await freePort();
  const config = parse(stack.configYaml) as { outpost: { listeners: { http: string } } };
  config.outpost.listeners.http = `127.0.0.1:${portB}`;
  replicaB = await Outpost.create(parseConfig(stringify(config), { source: 'replica B' }), { logger: quietLogger() });
  await replicaB.listen();
});

after(async () => {
  await replicaB?.close().catch(() => undefined);
  await stack?.close();
  await redis?.stop();
});

test('a login on one replica is a login on the other; a sign-out on one ends it on both; a restart keeps sessions', async () => {
  const cookie = await login();
  assert.equal(username(await ask('A', '/a', cookie)), 'alice');
  assert.equal(username(await ask('B', '/b', cookie)), 'alice', 'replica B accepts the cookie replica A issued');

  const out = await ask('B', '/outpost.goauthentik.io/sign_out', cookie);
  assert.equal(out.status, 302, out.body.slice(0, 200));
  assert.ok(isLoginRedirect(await ask('A', '/after-sign-out', cookie)), 'replica A refuses the signed-out cookie');
  assert.ok(isLoginRedirect(await ask('B', '/after-sign-out', cookie)));

  const again = await login();
  await stack.stopOutpost();
  await stack.restartOutpost();
  assert.equal(username(await ask('A', '/after-restart', again)), 'alice', 'the session survived the restart of replica A');
  assert.equal(username(await ask('B', '/after-restart', again)), 'alice');
});

test('a Redis outage fails closed with a 5xx page, never the upstream; it works again once Redis is back', async () => {
  const cookie = await login();
  assert.equal(username(await ask('B', '/', cookie)), 'alice');
  const port = redis.port;
  await redis.stop();

  const seenBefore = stack.upstream.requests.length;
  for (const replica of ['A', 'B'] as const) {
    for (const path of ['/secret', '/outpost.goauthentik.io/sign_out']) {
      const res = await ask(replica, path, cookie);
      assert.ok(res.status >= 500 && res.status < 600, `${replica} ${path}: expected 5xx, got ${res.status}`);
      assert.doesNotMatch(res.body, /x-authentik-username|"name":"upstream"/, 'no upstream answer');
    }
  }
  assert.equal(stack.upstream.requests.length, seenBefore, 'nothing reached the upstream during the outage');
  // Without a session cookie no store is asked: anonymous visitors are still sent to login.
  assert.ok(isLoginRedirect(await ask('A', '/anonymous')));

  // A new, empty Redis on the same port: the replicas reconnect by themselves.
  redis = await startRedis({ port });
  const deadline = Date.now() + 5_000;
  let res = await ask('A', '/secret', cookie);
  while (res.status >= 500 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    res = await ask('A', '/secret', cookie);
  }
  assert.ok(isLoginRedirect(res), `the session went with the old Redis: back to login (got ${res.status})`);
  const fresh = await login();
  assert.equal(username(await ask('B', '/', fresh)), 'alice');
});
