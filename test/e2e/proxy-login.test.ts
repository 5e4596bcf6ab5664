// Proxy mode end to end: a real OpenID Provider, a real upstream, Portcullis in between.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, followRedirects, submitThrough, type HttpResult } from '../support/browserless.js';
import { cookieNameFor } from '../../src/config/provider.js';

const ALICE = { username: 'alice', password: 'alice' };
const BOB = { username: 'bob', password: 'bob' };
const MANY_GROUPS = Array.from({ length: 120 }, (_, i) => `department-of-very-long-group-names-number-${i}`);

function seen(res: HttpResult): { url: string; method: string; headers: Record<string, string> } {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 300)}`);
  return JSON.parse(res.body) as { url: string; method: string; headers: Record<string, string> };
}

function cookieOf(res: HttpResult, name: string): string | undefined {
  const list = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  return list.find((c) => c.startsWith(name + '='));
}

let stack: Stack;
const APP = 'app.localtest';
const OTHER = 'other.localtest';
const BASIC = 'basic.localtest';

before(async () => {
  stack = await startStack({
    providers: [
      { name: 'app', host: APP, extra: { skip_path_regex: '^/public/\n\n^/health$\n', assigned_application_slug: 'the-app', assigned_application_name: 'The App' } },
      { name: 'other', host: OTHER },
      { name: 'basic', host: BASIC, extra: { basic_auth_enabled: true, basic_auth_user_attribute: 'svc_user', basic_auth_password_attribute: 'svc_password' } },
    ],
    users: [
      {
        username: 'alice',
        password: 'alice',
        name: 'Alice Liddell',
        email: 'alice@example.com',
        groups: ['admins', 'staff'],
        entitlements: ['reports:read', 'reports:write'],
        ak_proxy: { user_attributes: { additionalHeaders: { 'X-Team': 'platform', 'X-Level': 3, 'X-Beta': true }, svc_user: 'svc-alice', svc_password: 's3cret' } },
      },
      { username: 'bob', password: 'bob', email: 'bob@example.com', groups: ['staff'] },
      { username: 'carol', password: 'carol', email: 'carol@example.com', groups: MANY_GROUPS },
    ],
  });
});
after(async () => stack.close());

describe('login', () => {
  test('a first visit is sent to login and lands back on the exact URL, query kept', async () => {
    const jar = new CookieJar();
    const { final, hops } = await loginThrough(stack.url(APP, '/reports?month=11'), ALICE, { jar });
    assert.equal(hops[0]!.status, 302);
    assert.equal(hops[0]!.headers.location, `http://${APP}:${stack.port}/outpost.goauthentik.io/start?rd=${encodeURIComponent(`http://${APP}:${stack.port}/reports?month=11`)}`);
    // The authorization request uses PKCE S256, a nonce and a signed state.
    const authorize = new URL(String(hops[1]!.headers.location));
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(authorize.searchParams.get('nonce'));
    assert.match(authorize.searchParams.get('state')!, /^[\w-]+\.[\w-]+$/);
    assert.equal(authorize.searchParams.get('redirect_uri'), `http://${APP}:${stack.port}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`);
    const s = seen(final);
    assert.equal(s.url, '/reports?month=11');
    assert.equal(final.url, stack.url(APP, '/reports?month=11'));
  });

  test('the session cookie is named after the client id, HttpOnly, SameSite=Lax, with the session lifetime', async () => {
    const jar = new CookieJar();
    const { hops } = await loginThrough(stack.url(APP, '/'), ALICE, { jar });
    const callback = hops.find((h) => h.url.includes('/outpost.goauthentik.io/callback'))!;
    const cookie = cookieOf(callback, cookieNameFor('client-app'));
    assert.ok(cookie, 'session cookie set at the callback');
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Lax/);
    // access_token_validity is 3600 and so is the token's lifetime, counted from its issue a moment ago
    // (seconds pass between the issue and the callback on a loaded machine).
    assert.match(cookie, /Max-Age=(359\d|3600);/);
    assert.doesNotMatch(cookie, /Secure/); // external_host is http
    assert.equal(callback.status, 302);
  });

  test('API clients get 401 JSON instead of a redirect', async () => {
    for (const headers of [{ accept: 'application/json' }, { 'x-requested-with': 'XMLHttpRequest' }] as Record<string, string>[]) {
      const res = await httpGet(stack.url(APP, '/api/items'), { headers });
      assert.equal(res.status, 401);
      assert.match(String(res.headers['content-type']), /application\/json/);
      assert.equal(JSON.parse(res.body).error, 'auth.required');
    }
  });

  test('an invalid rd falls back to external_host', async () => {
    for (const rd of ['https://evil.example/x', '//evil.example/x', '/\\evil.example', 'javascript:alert(1)', `http://${APP}:${stack.port}@evil.example/`]) {
      const jar = new CookieJar();
      const start = stack.url(APP, `/outpost.goauthentik.io/start?rd=${encodeURIComponent(rd)}`);
      const { final } = await loginThrough(start, ALICE, { jar });
      assert.equal(final.url, stack.url(APP, '/'), `rd=${rd}`);
    }
  });

  test('an unencoded rd (as nginx sends it) keeps the whole original query', async () => {
    const jar = new CookieJar();
    const original = `http://${APP}:${stack.port}/list?a=1&b=2&c=%2F`;
    const { final } = await loginThrough(stack.url(APP, `/outpost.goauthentik.io/start?rd=${original}`), ALICE, { jar });
    assert.equal(final.url, original);
    assert.equal(seen(final).url, '/list?a=1&b=2&c=%2F');
  });

  test('the callback signature works on any URL (?X-authentik-auth-callback=true)', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(APP, '/first'), ALICE, { jar });
    // A second login in the same browser: the IdP answers at once (its own session) with a
    // redirect to the callback; deliver that answer to another path, signature and all.
    const start = stack.url(APP, `/outpost.goauthentik.io/start?rd=${encodeURIComponent(stack.url(APP, '/target?k=v'))}`);
    const toIdp = await followRedirects(start, { jar, stopWhen: (r) => String(r.headers.location ?? '').includes('/outpost.goauthentik.io/callback?') });
    const back = new URL(String(toIdp.final.headers.location));
    assert.match(back.search, /X-authentik-auth-callback=true/);
    const elsewhere = new URL(`/any/page${back.search}`, back);
    const done = await httpGet(elsewhere.href, { jar });
    assert.equal(done.status, 302, done.body.slice(0, 200));
    assert.equal(done.headers.location, stack.url(APP, '/target?k=v'));
    assert.equal(seen(await httpGet(stack.url(APP, '/target?k=v'), { jar })).url, '/target?k=v');
  });

  test('a replayed callback, or one from another browser, gets 400 and no session', async () => {
    const jar = new CookieJar();
    const { hops } = await loginThrough(stack.url(APP, '/x'), ALICE, { jar });
    const callback = hops.find((h) => h.url.includes('/outpost.goauthentik.io/callback'))!;
    // Same browser, same callback URL again: the flow was used up.
    const replay = await httpGet(callback.url, { jar });
    assert.equal(replay.status, 400);
    assert.equal(cookieOf(replay, cookieNameFor('client-app')), undefined);
    // Another browser that did not start the login.
    const stranger = new CookieJar();
    const foreign = await httpGet(callback.url, { jar: stranger });
    assert.equal(foreign.status, 400);
    assert.match(foreign.body, /auth\.state_(not_bound|invalid)/);
    assert.equal(cookieOf(foreign, cookieNameFor('client-app')), undefined);
  });

  test('a state signed for another provider, or altered, is refused', async () => {
    const jar = new CookieJar();
    const start = await httpGet(stack.url(OTHER, '/outpost.goauthentik.io/start'), { jar });
    const state = new URL(String(start.headers.location)).searchParams.get('state')!;
    const cross = await httpGet(stack.url(APP, `/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=x&state=${state}`), { jar });
    assert.equal(cross.status, 400);
    const altered = state.slice(0, -2) + (state.endsWith('AA') ? 'BB' : 'AA');
    const bad = await httpGet(stack.url(OTHER, `/outpost.goauthentik.io/callback?code=x&state=${altered}`), { jar });
    assert.equal(bad.status, 400);
    assert.match(bad.body, /auth\.state_invalid/);
  });

  test('a user whose groups would not fit a cookie still logs in; every header reaches the upstream', async () => {
    const jar = new CookieJar();
    const { final, hops } = await loginThrough(stack.url(APP, '/big'), { username: 'carol', password: 'carol' }, { jar });
    const s = seen(final);
    assert.equal(s.headers['x-authentik-groups'], MANY_GROUPS.join('|'));
    assert.ok(MANY_GROUPS.join('|').length > 4096);
    const cookie = cookieOf(hops.find((h) => h.url.includes('/callback'))!, cookieNameFor('client-app'))!;
    assert.ok(cookie.length < 1024, `session cookie is ${cookie.length} bytes`);
  });
});

describe('headers', () => {
  let jar: CookieJar;
  before(async () => {
    jar = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar });
  });

  test('the upstream receives the X-authentik-* set, X-Forwarded-*, and additionalHeaders', async () => {
    const s = seen(await httpGet(stack.url(APP, '/h'), { jar }));
    const h = s.headers;
    assert.equal(h['x-authentik-username'], 'alice');
    assert.equal(h['x-authentik-groups'], 'admins|staff');
    assert.equal(h['x-authentik-entitlements'], 'reports:read|reports:write');
    assert.equal(h['x-authentik-email'], 'alice@example.com');
    assert.equal(h['x-authentik-name'], 'Alice Liddell');
    assert.match(h['x-authentik-uid']!, /^[0-9a-f]{64}$/);
    assert.equal(h['x-authentik-jwt']!.split('.').length, 3);
    assert.equal(h['x-authentik-meta-outpost'], 'test outpost');
    assert.equal(h['x-authentik-meta-provider'], 'app');
    assert.equal(h['x-authentik-meta-app'], 'the-app');
    assert.match(h['x-authentik-meta-version']!, /^portcullis\/\d+\.\d+\.\d+/);
    assert.match(h['x-authentik-meta-jwks']!, /^http:\/\/127\.0\.0\.1:\d+\//);
    assert.equal(h['x-forwarded-host'], `${APP}:${stack.port}`);
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-team'], 'platform');
    assert.equal(h['x-level'], '3');
    assert.equal(h['x-beta'], 'true');
    assert.equal(h.host, new URL(stack.upstream.url).host, 'Host is the backend host; the original is in X-Forwarded-Host');
    assert.equal(h.authorization, undefined, 'basic auth is off for this provider');
  });

  test("Portcullis's own cookies are not forwarded; the application's are", async () => {
    const j = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar: j });
    const s = seen(await httpGet(stack.url(APP, '/c'), { jar: j, headers: { cookie: `${j.header(new URL(stack.url(APP)))}; app_pref=dark` } }));
    assert.equal(s.headers.cookie, 'app_pref=dark');
  });

  test('client-sent identity headers are removed in every spelling, on authenticated requests', async () => {
    const spoof = {
      'X-Authentik-Username': 'mallory',
      'x-authentik-groups': 'root',
      X_AUTHENTIK_EMAIL: 'mallory@evil',
      'X-authentik_uid': 'evil',
      'X-Authentik-Meta-Foo': 'unknown-but-ours',
      'X-Team': 'spoofed-additional',
      'X-Forwarded-For': '6.6.6.6',
      'X_Forwarded_Host': 'evil.example',
      'X-Real-IP': '6.6.6.6',
      Forwarded: 'for=6.6.6.6',
    };
    const s = seen(await httpGet(stack.url(APP, '/spoof'), { jar, headers: spoof }));
    assert.equal(s.headers['x-authentik-username'], 'alice');
    assert.equal(s.headers['x-authentik-groups'], 'admins|staff');
    assert.equal(s.headers['x-authentik-email'], 'alice@example.com');
    assert.equal(s.headers['x-team'], 'platform');
    assert.equal(s.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(s.headers['x-forwarded-host'], `${APP}:${stack.port}`);
    for (const name of Object.keys(s.headers)) {
      assert.ok(!name.includes('_'), `underscore header ${name} reached the upstream`);
      assert.notEqual(name, 'x-authentik-meta-foo');
      assert.notEqual(name, 'x-real-ip');
      assert.notEqual(name, 'forwarded');
    }
  });

  test('basic auth: Authorization built from user attributes; a client Authorization is replaced', async () => {
    const j = new CookieJar();
    const { final } = await loginThrough(stack.url(BASIC, '/'), ALICE, { jar: j });
    assert.equal(seen(final).headers.authorization, 'Basic ' + Buffer.from('svc-alice:s3cret').toString('base64'));
    const s = seen(await httpGet(stack.url(BASIC, '/'), { jar: j, headers: { Authorization: 'Basic bWFsbG9yeTpwdw==' } }));
    assert.equal(s.headers.authorization, 'Basic ' + Buffer.from('svc-alice:s3cret').toString('base64'));
    // A user without the password attribute gets no Authorization at all.
    const b = new CookieJar();
    const { final: bobFinal } = await loginThrough(stack.url(BASIC, '/'), BOB, { jar: b });
    assert.equal(seen(bobFinal).headers.authorization, undefined);
  });
});

describe('unauthenticated paths', () => {
  test('a matching path is served without login, spoofed identity headers stripped', async () => {
    const res = await httpGet(stack.url(APP, '/public/readme'), { headers: { 'X-Authentik-Username': 'mallory', 'x_authentik_groups': 'admins', Authorization: 'Bearer keep-me' } });
    const s = seen(res);
    assert.equal(s.url, '/public/readme');
    assert.equal(s.headers['x-authentik-username'], undefined);
    assert.equal(s.headers['x-authentik-groups'], undefined);
    assert.equal(s.headers.authorization, 'Bearer keep-me', "the app's own Authorization passes when basic auth is off");
  });

  test('with a session, an allowlisted path still gets the identity headers', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar });
    assert.equal(seen(await httpGet(stack.url(APP, '/public/x'), { jar })).headers['x-authentik-username'], 'alice');
  });

  test('blank lines do not allowlist everything; the query never matches', async () => {
    for (const path of ['/private', '/private?x=/public/', '/private?/health', '/healthz', '/x/health']) {
      const res = await httpGet(stack.url(APP, path));
      assert.equal(res.status, 302, `${path} must need login`);
    }
    assert.equal((await httpGet(stack.url(APP, '/health'))).status, 200);
  });

  test('the decision is made on the normalized path, which is what the upstream receives', async () => {
    // Climbing out of /public/ is resolved before the decision: it is not public.
    for (const path of ['/public/../private', '/public/%2e%2e/private', '/public/./../private', '//public/../private']) {
      const res = await httpGet(stack.url(APP, path));
      assert.equal(res.status, 302, `${path} must need login`);
      assert.match(String(res.headers.location), /rd=http%3A%2F%2Fapp\.localtest%3A\d+%2Fprivate$/);
    }
    // Tricks that would hide a dot segment are refused outright.
    for (const path of ['/public/..%2Fprivate', '/public/..;/private', '/public/%2e%2e%5cprivate']) {
      assert.equal((await httpGet(stack.url(APP, path))).status, 400, path);
    }
    // What passes is forwarded exactly as decided.
    const s = seen(await httpGet(stack.url(APP, '//public//a/./b/../c%2Fd%23e;x?q=%2F..')));
    assert.equal(s.url, '/public/a/c%2Fd%23e;x?q=%2F..');
  });
});

describe('cookies that are not a session', () => {
  test('a malformed, tampered or foreign cookie is exactly no cookie, and is cleared', async () => {
    const name = cookieNameFor('client-app');
    const jar = new CookieJar();
    await loginThrough(stack.url(OTHER, '/'), ALICE, { jar });
    const otherCookie = jar.get(cookieNameFor('client-other'), OTHER)!;
    const good = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar: good });
    const value = good.get(name, APP)!;
    const tampered = value.slice(0, 10) + (value[10] === 'A' ? 'B' : 'A') + value.slice(11);
    for (const v of ['garbage', '', 'a;b', '%%%', tampered, value + '%21', value.replace('%3B', '%3B%20'), otherCookie, 'x'.repeat(3000)]) {
      const res = await httpGet(stack.url(APP, '/private'), { headers: { cookie: `${name}=${v}` } });
      assert.equal(res.status, 302, `cookie ${v.slice(0, 20)}`);
      assert.match(String(res.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/);
      if (v !== '') assert.match(String(cookieOf(res, name)), /Max-Age=0/);
      const api = await httpGet(stack.url(APP, '/private'), { headers: { cookie: `${name}=${v}`, accept: 'application/json' } });
      assert.equal(api.status, 401);
    }
  });
});

describe('routing', () => {
  test('an unknown host gets 400, JSON for API clients and HTML otherwise', async () => {
    const html = await httpGet(`http://nowhere.localtest:${stack.port}/`);
    assert.equal(html.status, 400);
    assert.match(String(html.headers['content-type']), /text\/html/);
    assert.match(html.body, /nowhere\.localtest/);
    const json = await httpGet(`http://nowhere.localtest:${stack.port}/`, { headers: { accept: 'application/json' } });
    assert.equal(json.status, 400);
    assert.equal(JSON.parse(json.body).error, 'routing.unknown_host');
  });

  test('X-Forwarded-Host from an untrusted peer does not choose the provider', async () => {
    const res = await httpGet(`http://nowhere.localtest:${stack.port}/`, { headers: { 'x-forwarded-host': `${APP}:${stack.port}` } });
    assert.equal(res.status, 400);
  });

  test('ping answers 204 on any host', async () => {
    assert.equal((await httpGet(`http://whatever.localtest:${stack.port}/outpost.goauthentik.io/ping`)).status, 204);
  });

  test('each provider has its own cookie; a login to one is not a login to another', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar });
    assert.notEqual(cookieNameFor('client-app'), cookieNameFor('client-other'));
    const res = await httpGet(stack.url(OTHER, '/'), { jar });
    assert.equal(res.status, 302);
  });
});

describe('sign-out', () => {
  test('ends every session of the user on the outpost (devices and providers), then goes to the IdP', async () => {
    const laptop = new CookieJar();
    const phone = new CookieJar();
    const bobJar = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar: laptop });
    await loginThrough(stack.url(OTHER, '/'), ALICE, { jar: laptop });
    await loginThrough(stack.url(APP, '/'), ALICE, { jar: phone });
    await loginThrough(stack.url(APP, '/'), BOB, { jar: bobJar });
    const before = stack.outpost.store.size() as number;
    const out = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'), { jar: phone });
    assert.equal(out.status, 302);
    const end = new URL(String(out.headers.location));
    assert.equal(end.origin, stack.idp.issuer);
    assert.equal(end.searchParams.get('post_logout_redirect_uri'), stack.url(APP, '/outpost.goauthentik.io/signed_out'));
    assert.equal(end.searchParams.get('id_token_hint')!.split('.').length, 3);
    assert.match(String(cookieOf(out, cookieNameFor('client-app'))), /Max-Age=0/);
    // Every session of alice's went (earlier tests made more than these three); bob's remain.
    assert.ok((stack.outpost.store.size() as number) <= before - 3);
    assert.equal((await httpGet(stack.url(APP, '/'), { jar: laptop })).status, 302);
    assert.equal((await httpGet(stack.url(OTHER, '/'), { jar: laptop })).status, 302);
    assert.equal((await httpGet(stack.url(APP, '/'), { jar: phone })).status, 302);
    assert.equal((await httpGet(stack.url(APP, '/'), { jar: bobJar })).status, 200, "another user's session stays");
    // The IdP logs the browser out and sends it back to the signed-out page.
    const { final } = await submitThrough(String(out.headers.location), { jar: phone });
    assert.equal(new URL(final.url).pathname, '/outpost.goauthentik.io/signed_out', final.url);
    assert.equal(final.status, 200);
    assert.match(final.body, /You are signed out/);
  });

  test('?X-authentik-logout=true on any URL signs out too', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(APP, '/'), BOB, { jar });
    const out = await httpGet(stack.url(APP, '/anything?X-authentik-logout=true'), { jar });
    assert.equal(out.status, 302);
    assert.ok(String(out.headers.location).startsWith(stack.idp.issuer));
    assert.equal((await httpGet(stack.url(APP, '/'), { jar })).status, 302);
  });

  test('without a session it says so and clears nothing else', async () => {
    const res = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'));
    assert.equal(res.status, 200);
    assert.match(res.body, /You are signed out/);
  });
});

describe('restart', () => {
  test('sessions survive a restart; signed-out sessions stay dead', async () => {
    const kept = new CookieJar();
    const ended = new CookieJar();
    await loginThrough(stack.url(OTHER, '/'), ALICE, { jar: kept });
    await loginThrough(stack.url(OTHER, '/'), BOB, { jar: ended });
    const endedCookie = ended.header(new URL(stack.url(OTHER)));
    assert.equal((await httpGet(stack.url(OTHER, '/outpost.goauthentik.io/sign_out'), { jar: ended })).status, 302);
    await stack.stopOutpost();
    await stack.restartOutpost();
    assert.equal(seen(await httpGet(stack.url(OTHER, '/after-restart'), { jar: kept })).headers['x-authentik-username'], 'alice');
    const revived = await httpGet(stack.url(OTHER, '/'), { headers: { cookie: endedCookie } });
    assert.equal(revived.status, 302);
  });
});

test('the login page flow follows redirects to the IdP for a deep link with a fragment-free query', async () => {
  const { final } = await followRedirects(stack.url(APP, '/deep?a=1&b=%2F'), { jar: new CookieJar() });
  assert.equal(final.status, 200);
  assert.ok(final.url.startsWith(stack.idp.issuer));
});
