// Token refresh and sliding sessions against the real oidc-provider (refresh tokens on, ID and
// access tokens living 4 s) with two Portcullis replicas on Redis: 50 parallel requests at expiry
// cause exactly one refresh-token request (counted at the IdP) and no logout; claims and scope
// mappings follow the IdP; X-authentik-jwt never carries an expired token; a refused refresh ends
// the session cleanly and the next request logs in again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { startStack, startReplica, type Stack } from '../support/stack.js';
import { startRedis, type RunningRedis } from '../support/redis.js';
import { CookieJar, httpGet, loginThrough, submitThrough, type HttpResult } from '../support/browserless.js';
import type { Outpost } from '../../src/server/outpost.js';
import { DEMO_USERS } from '../../src/demo/identity-provider.js';

const APP = 'app.localtest';
const NOREFRESH = 'norefresh.localtest';
const ALICE = { username: 'alice', password: 'alice' };
const TOKEN_TTL = 4;

let redis: RunningRedis;
let stack: Stack;
let replicaB: Outpost;
let portB: number;

before(async () => {
  redis = await startRedis();
  stack = await startStack({
    providers: [
      {
        name: 'app',
        host: APP,
        client: { refresh_tokens: true },
        extra: { mappings: [{ name: 'group count', expression: '{"x_group_count": string(size(claims.groups))}' }] },
      },
      { name: 'norefresh', host: NOREFRESH, client: { refresh_tokens: true }, extra: { offline_access: false } },
    ],
    idp: { idTokenTtlSeconds: TOKEN_TTL, accessTokenTtlSeconds: TOKEN_TTL },
    outpost: { session_store: { type: 'redis', url: redis.url, key_prefix: 'refresh:' } },
  });
  ({ outpost: replicaB, port: portB } = await startReplica(stack));
});

after(async () => {
  await replicaB?.close().catch(() => undefined);
  await stack?.close();
  await redis?.stop();
});

function ask(replica: 'A' | 'B', host: string, cookie: string, path = '/private'): Promise<HttpResult> {
  const port = replica === 'A' ? stack.port : portB;
  return httpGet(`http://${host}:${port}${path}`, { headers: { host: `${host}:${stack.port}`, cookie } });
}

function upstreamSaw(res: HttpResult): Record<string, string> {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status} ${String(res.headers.location ?? '')}`);
  return (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function login(host: string): Promise<{ cookie: string; at: number; authorize: URL }> {
  const jar = new CookieJar();
  const { final, hops } = await loginThrough(stack.url(host, '/'), ALICE, { jar });
  assert.equal(final.status, 200);
  const authorize = new URL(String(hops.find((h) => String(h.headers.location ?? '').startsWith(stack.idp.issuer))!.headers.location));
  return { cookie: jar.header(new URL(stack.url(host, '/')))!, at: Date.now(), authorize };
}

test('50 parallel requests on two replicas at token expiry: exactly one refresh, no logout, never an expired X-authentik-jwt', async () => {
  const s = await login(APP);
  assert.ok(s.authorize.searchParams.get('scope')!.split(' ').includes('offline_access'), 'offline_access is asked for (the IdP lists it)');
  const start = stack.idp.refreshes;
  // Fresh tokens: no refresh.
  const early = upstreamSaw(await ask('A', APP, s.cookie));
  assert.equal(stack.idp.refreshes, start);
  const firstJwt = early['x-authentik-jwt']!;

  // Wait until the tokens have expired, then 50 requests at once, alternating replicas.
  await sleep(Math.max(0, s.at + TOKEN_TTL * 1000 + 300 - Date.now()));
  assert.ok(decodeJwt(firstJwt).exp! * 1000 < Date.now(), 'the login tokens are expired now');
  const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => ask(i % 2 ? 'A' : 'B', APP, s.cookie, `/p/${i}`)));
  const at = Date.now() / 1000;
  for (const res of answers) {
    const h = upstreamSaw(res);
    assert.equal(h['x-authentik-username'], 'alice', 'no logout');
    const exp = decodeJwt(h['x-authentik-jwt']!).exp!;
    assert.ok(exp > at, `X-authentik-jwt unexpired (exp ${exp}, now ${at})`);
    assert.notEqual(h['x-authentik-jwt'], firstJwt);
  }
  assert.equal(stack.idp.refreshes - start, 1, 'exactly one refresh-token request reached the IdP');
  // The refreshed session serves on, on both replicas, without another refresh.
  for (const r of ['A', 'B'] as const) upstreamSaw(await ask(r, APP, s.cookie));
  assert.equal(stack.idp.refreshes - start, 1);
});

test('a refresh takes up what changed at the IdP; the scope mappings are evaluated again', async () => {
  const s = await login(APP);
  const before = upstreamSaw(await ask('A', APP, s.cookie));
  assert.equal(before['x-authentik-groups'], 'admins|staff');
  const alice = DEMO_USERS.find((u) => u.username === 'alice')!;
  stack.idp.setUser({ ...alice, groups: ['admins', 'staff', 'auditors'] });
  try {
    await sleep(Math.max(0, s.at + TOKEN_TTL * 1000 + 200 - Date.now()));
    const after = upstreamSaw(await ask('B', APP, s.cookie));
    assert.equal(after['x-authentik-groups'], 'admins|staff|auditors');
    const info = JSON.parse((await ask('A', APP, s.cookie, '/outpost.goauthentik.io/userinfo')).body) as { groups: string[] };
    assert.deepEqual(info.groups, ['admins', 'staff', 'auditors']);
  } finally {
    stack.idp.setUser(alice);
  }
});

test('a refresh refused by the IdP (its session ended there) ends the session cleanly; the next request logs in', async () => {
  const jar = new CookieJar();
  await loginThrough(stack.url(APP, '/'), ALICE, { jar });
  const at = Date.now();
  const cookie = jar.header(new URL(stack.url(APP, '/')))!;
  upstreamSaw(await ask('A', APP, cookie));
  // The user signs out at the IdP (this client has no back-channel logout): the grant is revoked.
  await submitThrough(`${stack.idp.issuer}/session/end`, { jar });
  upstreamSaw(await ask('A', APP, cookie)); // the tokens are still valid a moment longer
  const start = stack.idp.refreshes;
  await sleep(Math.max(0, at + TOKEN_TTL * 1000 + 200 - Date.now()));
  const res = await ask('B', APP, cookie);
  assert.equal(res.status, 302, 'sent to log in again');
  assert.match(String(res.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/);
  assert.match(([] as string[]).concat(res.headers['set-cookie'] ?? []).join('\n'), /Max-Age=0/, 'the cookie is cleared');
  assert.equal(stack.idp.refreshes - start, 1, 'one refresh was tried, and refused');
  assert.equal((await ask('A', APP, cookie)).status, 302, 'the session is gone on the other replica too');
  assert.equal(stack.idp.refreshes - start, 1, 'no second attempt');
  // Logging in again works.
  const { final } = await loginThrough(stack.url(APP, '/'), ALICE, { jar });
  assert.equal(upstreamSaw(final)['x-authentik-username'], 'alice');
});

test('with offline_access: false the session ends with its tokens and no refresh is tried', async () => {
  const s = await login(NOREFRESH);
  assert.equal(s.authorize.searchParams.get('scope')!.split(' ').includes('offline_access'), false);
  const start = stack.idp.refreshes;
  upstreamSaw(await ask('A', NOREFRESH, s.cookie));
  await sleep(Math.max(0, s.at + TOKEN_TTL * 1000 + 200 - Date.now()));
  await ask('A', NOREFRESH, s.cookie);
  await ask('B', NOREFRESH, s.cookie);
  // (How long such a session lives is issue 8.9's: min(access_token_validity, token exp).)
  assert.equal(stack.idp.refreshes, start, 'no refresh-token request');
});
