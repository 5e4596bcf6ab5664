// Logout that starts at the identity provider, against the real oidc-provider and two Portcullis
// replicas sharing Redis: OpenID Connect Back-Channel Logout (the IdP's server posts a logout
// token to 127.0.0.1, no provider's external_host) and Front-Channel Logout (the IdP's logout page
// frames our URL with iss and sid). Forged, replayed, foreign and malformed logout tokens are
// refused with 400 and end nothing.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { startStack, startReplica, type Stack } from '../support/stack.js';
import { startRedis, type RunningRedis } from '../support/redis.js';
import { CookieJar, httpGet, loginThrough, submitThrough, parseForms, decodeEntities, type HttpResult } from '../support/browserless.js';
import type { Outpost } from '../../src/server/outpost.js';

const APP = 'app.localtest';
const FRONT = 'front.localtest';
const PLAIN = 'plain.localtest';
const ALICE = { username: 'alice', password: 'alice' };
const BOB = { username: 'bob', password: 'bob' };
const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} };

let redis: RunningRedis;
let stack: Stack;
let replicaB: Outpost;
let portB: number;

before(async () => {
  redis = await startRedis();
  stack = await startStack({
    providers: [
      // Back-channel only: front-channel requests end nothing of it.
      { name: 'app', host: APP, client: { backchannel_logout: true }, extra: { frontchannel_logout: 'off' } },
      { name: 'front', host: FRONT, client: { frontchannel_logout: true } },
      { name: 'plain', host: PLAIN },
    ],
    outpost: { session_store: { type: 'redis', url: redis.url, key_prefix: 'idp-logout:' } },
  });
  ({ outpost: replicaB, port: portB } = await startReplica(stack));
});

after(async () => {
  await replicaB?.close().catch(() => undefined);
  await stack?.close();
  await redis?.stop();
});

/** A request with exactly this Cookie header (another device holding the cookie), to replica A or B. */
function ask(replica: 'A' | 'B', host: string, cookie: string): Promise<HttpResult> {
  const port = replica === 'A' ? stack.port : portB;
  return httpGet(`http://${host}:${port}/private`, { headers: { host: `${host}:${stack.port}`, cookie } });
}

function signedIn(res: HttpResult): boolean {
  return res.status === 200 && (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-authentik-username'] !== undefined;
}

async function login(host: string, user = ALICE): Promise<{ jar: CookieJar; cookie: string }> {
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(host, '/'), user, { jar });
  assert.equal(final.status, 200, final.body.slice(0, 200));
  return { jar, cookie: jar.header(new URL(stack.url(host, '/')))! };
}

/** Polls until `check` is true or `ms` pass; returns how long it took. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) assert.fail(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function postLogout(body: string, opts: { port?: number; host?: string; contentType?: string } = {}): Promise<HttpResult> {
  const port = opts.port ?? stack.port;
  return httpGet(`http://127.0.0.1:${port}/outpost.goauthentik.io/backchannel_logout`, {
    method: 'POST',
    body,
    headers: { 'content-type': opts.contentType ?? 'application/x-www-form-urlencoded', ...(opts.host ? { host: opts.host } : {}) },
  });
}

const form = (token: string) => new URLSearchParams({ logout_token: token }).toString();

function claims(extra: JWTPayload = {}): JWTPayload {
  return { iss: stack.idp.issuer, aud: 'client-app', iat: Math.floor(Date.now() / 1000), jti: randomUUID(), events: EVENT, ...extra };
}

function sidOf(jar: CookieJar, host: string): Promise<string> {
  // The session's IdP sid, read the way an administrator would: from the stored session.
  return (async () => {
    const p = stack.outpost.providers.byName(host === APP ? 'app' : host === FRONT ? 'front' : 'plain')!;
    const raw = jar.get(p.cookieName, host)!;
    const id = p.sessionCodec.decode(decodeURIComponent(raw))!.s as string;
    const record = await stack.outpost.store.get(id);
    assert.ok(record?.sid, 'the session stored the IdP sid');
    return record.sid;
  })();
}

describe('back-channel logout', () => {
  test('signing out at the IdP ends that IdP session at Portcullis within a second, on both replicas, for any device holding the cookie', async () => {
    const laptop = await login(APP);
    const phone = await login(APP); // another device: another IdP session, another sid
    const bob = await login(APP, BOB);
    for (const r of ['A', 'B'] as const) for (const s of [laptop, phone, bob]) assert.ok(signedIn(await ask(r, APP, s.cookie)));
    const deliveredBefore = stack.idp.backchannelResults.length;

    // The user signs out at the IdP itself (not through Portcullis).
    const signedOutAt = Date.now();
    await submitThrough(`${stack.idp.issuer}/session/end`, { jar: laptop.jar });
    const delivered = stack.idp.backchannelResults.slice(deliveredBefore);
    assert.deepEqual(delivered, [{ clientId: 'client-app', ok: true }], 'the IdP delivered the logout token and Portcullis answered 200');

    const took = await within(1000, async () => !signedIn(await ask('A', APP, laptop.cookie)) && !signedIn(await ask('B', APP, laptop.cookie)));
    assert.ok(Date.now() - signedOutAt < 5000 && took <= 1000);
    const refused = await ask('B', APP, laptop.cookie);
    assert.equal(refused.status, 302, 'the ended session is sent to login');
    // Only that IdP session ended: the phone's and bob's sessions stay.
    for (const r of ['A', 'B'] as const) {
      assert.ok(signedIn(await ask(r, APP, phone.cookie)), 'another IdP session of the same user stays');
      assert.ok(signedIn(await ask(r, APP, bob.cookie)));
    }
  });

  test('a logout token with only sub ends every session of that user at that provider only', async () => {
    const one = await login(APP);
    const two = await login(APP);
    const plain = await login(PLAIN);
    const sub = (JSON.parse((await ask('A', APP, one.cookie)).body) as { headers: Record<string, string> }).headers['x-authentik-uid']!;
    const res = await postLogout(form(await stack.idp.signJwt(claims({ sub }))), { port: portB });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    for (const r of ['A', 'B'] as const) {
      assert.equal(signedIn(await ask(r, APP, one.cookie)), false);
      assert.equal(signedIn(await ask(r, APP, two.cookie)), false);
      assert.ok(signedIn(await ask(r, PLAIN, plain.cookie)), "the user's session at another provider stays");
    }
  });

  test('forged, replayed, foreign and malformed logout tokens are refused with 400 and end nothing', async () => {
    const victim = await login(APP);
    const sid = await sidOf(victim.jar, APP);
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT(claims({ sid })).setProtectedHeader({ alg: 'RS256', kid: 'attacker', typ: 'logout+jwt' }).sign(privateKey);
    const unsigned = [Buffer.from('{"alg":"none"}').toString('base64url'), Buffer.from(JSON.stringify(claims({ sid }))).toString('base64url'), ''].join('.');
    const cases: [string, string][] = [
      ['forged signature', form(forged)],
      ['alg none', form(unsigned)],
      ['wrong aud', form(await stack.idp.signJwt(claims({ sid, aud: 'client-someone-else' })))],
      ['wrong iss', form(await stack.idp.signJwt(claims({ sid, iss: 'https://idp.example' })))],
      ['with a nonce', form(await stack.idp.signJwt(claims({ sid, nonce: 'n' })))],
      ['no events', form(await stack.idp.signJwt(claims({ sid, events: undefined })))],
      ['another event', form(await stack.idp.signJwt(claims({ sid, events: { 'http://example.com/other': {} } })))],
      ['stale iat', form(await stack.idp.signJwt(claims({ sid, iat: Math.floor(Date.now() / 1000) - 600 })))],
      ['iat in the future', form(await stack.idp.signJwt(claims({ sid, iat: Math.floor(Date.now() / 1000) + 600 })))],
      ['expired', form(await stack.idp.signJwt(claims({ sid, exp: Math.floor(Date.now() / 1000) - 60 })))],
      ['no jti', form(await stack.idp.signJwt(claims({ sid, jti: undefined })))],
      ['neither sub nor sid', form(await stack.idp.signJwt(claims()))],
      ['an ID token (typ JWT, no events)', form(await stack.idp.signJwt({ ...claims({ sid }), events: undefined }, 'JWT'))],
      ['an access-token typ', form(await stack.idp.signJwt(claims({ sid }), 'at+jwt'))],
      ['not a JWT', form('not-a-jwt')],
      ['two tokens', `${form(await stack.idp.signJwt(claims({ sid })))}&${form('x')}`],
      ['no token', 'other=1'],
    ];
    for (const [name, body] of cases) {
      const res = await postLogout(body);
      assert.equal(res.status, 400, `${name}: ${res.status} ${res.body}`);
      assert.equal(res.headers['cache-control'], 'no-store', name);
      assert.equal((JSON.parse(res.body) as { error: string }).error, 'invalid_request', name);
      assert.ok(signedIn(await ask('B', APP, victim.cookie)), `${name}: the session is still alive`);
    }
    const json = await postLogout(JSON.stringify({ logout_token: forged }), { contentType: 'application/json' });
    assert.ok(json.status === 400 || json.status === 415, `a JSON body: ${json.status}`);
    assert.equal((await httpGet(`http://127.0.0.1:${stack.port}/outpost.goauthentik.io/backchannel_logout`)).status, 405);

    // A genuine token works once; the same token again (a replay, on the other replica) is refused.
    const genuine = form(await stack.idp.signJwt(claims({ sid })));
    assert.equal((await postLogout(genuine)).status, 200);
    assert.equal(signedIn(await ask('A', APP, victim.cookie)), false);
    const again = await login(APP);
    const replay = await postLogout(genuine, { port: portB });
    assert.equal(replay.status, 400);
    assert.match(replay.body, /replayed/);
    assert.ok(signedIn(await ask('A', APP, again.cookie)));
  });

  test('reachable on any host: a provider host works as well as a bare address', async () => {
    const s = await login(APP);
    const sid = await sidOf(s.jar, APP);
    const res = await postLogout(form(await stack.idp.signJwt(claims({ sid }))), { host: `${APP}:${stack.port}` });
    assert.equal(res.status, 200, res.body);
    assert.equal(signedIn(await ask('A', APP, s.cookie)), false);
  });
});

describe('front-channel logout', () => {
  test("the IdP's logout page frames the front-channel URL; loading it ends the IdP session's sessions on both replicas", async () => {
    const device = await login(FRONT);
    const other = await login(FRONT);
    for (const r of ['A', 'B'] as const) assert.ok(signedIn(await ask(r, FRONT, device.cookie)));

    // The IdP's logout page (what its iframe would load), as the browser sees it.
    const logoutPage = await httpGet(`${stack.idp.issuer}/session/end`, { jar: device.jar });
    const src = /<iframe class="frontchannel-logout" src="([^"]+)"/.exec(logoutPage.body)?.[1];
    assert.ok(src, `the logout page frames our URL: ${logoutPage.body.slice(0, 400)}`);
    const url = new URL(decodeEntities(src));
    assert.equal(url.pathname, '/outpost.goauthentik.io/frontchannel_logout');
    assert.equal(url.searchParams.get('iss'), stack.idp.issuer);
    assert.equal(url.searchParams.get('sid'), await sidOf(device.jar, FRONT));

    // A cross-site iframe sends no SameSite=Lax cookie: iss and sid alone do it.
    const framed = await httpGet(url.href);
    assert.equal(framed.status, 200);
    assert.equal(framed.headers['cache-control'], 'no-store');
    assert.equal(framed.headers['content-security-policy'], `frame-ancestors ${new URL(stack.idp.issuer).origin}`);
    assert.equal(framed.headers['x-frame-options'], undefined);
    for (const r of ['A', 'B'] as const) {
      assert.equal(signedIn(await ask(r, FRONT, device.cookie)), false, `replica ${r} refuses the ended session`);
      assert.ok(signedIn(await ask(r, FRONT, other.cookie)), 'another IdP session stays');
    }
    // The page then submits its form (once its frames loaded): the IdP session ends too.
    assert.ok(parseForms(logoutPage.body, logoutPage.url).some((f) => f.id === 'op.logoutForm'));
  });

  test('frontchannel_logout: off — a front-channel request with that session\'s iss and sid ends nothing of that provider', async () => {
    const s = await login(APP);
    const sid = await sidOf(s.jar, APP);
    const res = await httpGet(`http://127.0.0.1:${stack.port}/outpost.goauthentik.io/frontchannel_logout?${new URLSearchParams({ iss: stack.idp.issuer, sid })}`);
    // The issuer's other providers still accept front-channel logout (and had no such session).
    assert.equal(res.status, 200);
    assert.match(res.body, /No session of this application was open here/);
    for (const r of ['A', 'B'] as const) assert.ok(signedIn(await ask(r, APP, s.cookie)), `replica ${r} keeps the session`);
  });

  test('without iss or sid, or with an unknown iss: 400, frameable by nobody, nothing ended', async () => {
    const s = await login(FRONT);
    const sid = await sidOf(s.jar, FRONT);
    for (const q of [`sid=${sid}`, `iss=${encodeURIComponent(stack.idp.issuer)}`, `iss=https%3A%2F%2Fevil.example&sid=${sid}`, '']) {
      const res = await httpGet(`http://127.0.0.1:${stack.port}/outpost.goauthentik.io/frontchannel_logout?${q}`);
      assert.equal(res.status, 400, q);
      assert.equal(res.headers['content-security-policy'], "frame-ancestors 'none'", q);
      assert.equal(res.headers['cache-control'], 'no-store');
    }
    assert.ok(signedIn(await ask('A', FRONT, s.cookie)));
  });
});
