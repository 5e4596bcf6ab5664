// The forward-auth endpoints, called the way each reverse proxy calls them. Traefik and Envoy are
// not packaged here, so their requests are reproduced with exactly the headers they send:
//  - Traefik ForwardAuth: the original headers plus X-Forwarded-Proto, -Host, -Uri, -Method, -For;
//  - Envoy ext_authz (HTTP service): the original method, path_prefix + original path and query,
//    Host = the original :authority, plus the allowed headers (cookie, x-forwarded-proto).
// nginx and Caddy are also run for real in forward-proxies.test.ts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, followRedirects, httpGet, isRedirect, loginThrough, parseForms, submitForm, type HttpResult } from '../support/browserless.js';
import type { SessionRecord } from '../../src/sessions/store.js';
import { verifyState } from '../../src/plugins/auth/state.js';

let stack: Stack;
let untrusted: Stack;
const jar = new CookieJar();
const ALICE = { username: 'alice', password: 'alice' };
const APP = 'app.localtest';

before(async () => {
  stack = await startStack({
    providers: [
      { name: 'app', host: APP, mode: 'forward_single', extra: { skip_path_regex: '^/public(/|$)' } },
      { name: 'dom', host: 'auth.d.localtest', mode: 'forward_domain', extra: { cookie_domain: 'd.localtest', skip_path_regex: '^http://pub\\.d\\.localtest(:\\d+)?/' } },
    ],
  });
  // Loopback is trusted by default only while trusted_proxies is empty.
  untrusted = await startStack({ providers: [{ name: 'app', host: APP, mode: 'forward_single' }], outpost: { trusted_proxies: ['10.9.9.9/32'] } });
  const { final } = await loginThrough(stack.url(APP, '/outpost.goauthentik.io/start?rd=/'), ALICE, { jar });
  assert.equal(final.status, 404, 'after login the browser lands on / of the app host, which Portcullis does not serve');
});
after(async () => {
  await stack?.close();
  await untrusted?.close();
});

const appHost = () => `${APP}:${stack.port}`;
const cookieOf = (name = 'app') => {
  const p = stack.outpost.providers.byName(name)!;
  return `${p.cookieName}=${jar.get(p.cookieName, APP)}`;
};

type Kind = 'nginx' | 'traefik' | 'caddy' | 'envoy';
/** One forward-auth check as `kind` sends it, for the original request `method scheme://host target`. */
function check(kind: Kind, original: { host: string; target: string; method?: string; scheme?: string }, extra: Record<string, string> = {}, on: Stack = stack): Promise<HttpResult> {
  const scheme = original.scheme ?? 'http';
  const method = original.method ?? 'GET';
  const base = `http://127.0.0.1:${on.port}`;
  const headers: Record<string, string> = { 'user-agent': 'Mozilla/5.0 test', accept: 'text/html', ...extra };
  switch (kind) {
    case 'nginx':
      return httpGet(`${base}/outpost.goauthentik.io/auth/nginx`, { headers: { host: original.host, 'x-original-url': `${scheme}://${original.host}${original.target}`, 'x-original-method': method, ...headers } });
    case 'traefik':
    case 'caddy':
      return httpGet(`${base}/outpost.goauthentik.io/auth/${kind}${kind === 'caddy' ? query(original.target) : ''}`, {
        method: 'GET',
        headers: {
          host: kind === 'caddy' ? original.host : `127.0.0.1:${on.port}`,
          'x-forwarded-proto': scheme,
          'x-forwarded-host': original.host,
          'x-forwarded-uri': original.target,
          'x-forwarded-method': method,
          'x-forwarded-for': '192.0.2.7',
          ...headers,
        },
      });
    case 'envoy':
      return httpGet(`${base}/outpost.goauthentik.io/auth/envoy${original.target}`, { method, headers: { host: original.host, 'x-forwarded-proto': scheme, ...headers } });
  }
}
const query = (target: string) => (target.includes('?') ? target.slice(target.indexOf('?')) : '');
const KINDS: Kind[] = ['nginx', 'traefik', 'caddy', 'envoy'];
const identityNames = (res: HttpResult) => Object.keys(res.headers).filter((h) => h.toLowerCase().startsWith('x-authentik-'));

/**
 * A challenge that begins the login at the IdP, as authentik's outpost answers Traefik, Caddy and
 * Envoy: 302 to the authorization endpoint with this provider's client_id and redirect_uri, PKCE,
 * a state, and the flow cookie that binds the login to the browser set on the same answer.
 * Returns that Set-Cookie line.
 */
function assertLoginAtIdp(res: HttpResult, provider: string, externalBase: string): string {
  assert.equal(res.status, 302, res.body);
  const loc = new URL(String(res.headers.location));
  assert.equal(loc.origin, new URL(stack.idp.issuer).origin, 'straight to the IdP, not to /start');
  assert.equal(loc.searchParams.get('client_id'), `client-${provider}`);
  assert.equal(loc.searchParams.get('redirect_uri'), `${externalBase}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`);
  assert.equal(loc.searchParams.get('response_type'), 'code');
  assert.equal(loc.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(loc.searchParams.get('state'));
  const p = stack.outpost.providers.byName(provider)!;
  const flow = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${p.flowCookieName}=`) && !c.startsWith(`${p.flowCookieName}=;`));
  assert.ok(flow, 'the login flow cookie is set on the challenge');
  return flow;
}

describe('the table: authenticated, allowlisted, not authenticated', () => {
  for (const kind of KINDS) {
    test(`${kind}: authenticated → 200 with the identity headers`, async () => {
      const res = await check(kind, { host: appHost(), target: '/private/x?y=1' }, { cookie: cookieOf() });
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers['x-authentik-username'], 'alice');
      assert.equal(res.headers['x-authentik-groups'], 'admins|staff');
      assert.equal(res.headers['x-authentik-meta-provider'], 'app');
      assert.equal(res.headers['x-authentik-meta-outpost'], 'test outpost');
      assert.equal(identityNames(res).length, 12);
    });

    test(`${kind}: allowlisted → 200 without identity headers`, async () => {
      const res = await check(kind, { host: appHost(), target: '/public/page?q=1' });
      assert.equal(res.status, 200);
      assert.deepEqual(identityNames(res), []);
    });

    test(`${kind}: not authenticated → ${kind === 'nginx' ? '401' : "302 straight to the IdP's authorization endpoint, the login flow cookie on that answer"}`, async () => {
      const res = await check(kind, { host: appHost(), target: '/private/x?y=1&z=2' });
      if (kind === 'nginx') {
        assert.equal(res.status, 401);
        assert.equal(res.headers.location, undefined);
      } else {
        assertLoginAtIdp(res, 'app', `http://${appHost()}`);
      }
      assert.deepEqual(identityNames(res), []);
    });

    test(`${kind}: forward_domain — the provider is found by cookie domain; the challenge goes to the auth host`, async () => {
      const pub = await check(kind, { host: `pub.d.localtest:${stack.port}`, target: '/anything' });
      assert.equal(pub.status, 200);
      assert.deepEqual(identityNames(pub), []);
      const res = await check(kind, { host: `x.d.localtest:8443`, target: '/p?q=pub.d.localtest/', scheme: 'https' });
      if (kind === 'nginx') assert.equal(res.status, 401);
      else {
        // The callback is on the auth host; the flow cookie covers the whole domain.
        const flow = assertLoginAtIdp(res, 'dom', `http://auth.d.localtest:${stack.port}`);
        assert.match(flow, /; Domain=d\.localtest/);
      }
    });

    test(`${kind}: a malformed, tampered, foreign, stale or expired session cookie is no cookie (CVE-2026-25748)`, async () => {
      const p = stack.outpost.providers.byName('app')!;
      const other = stack.outpost.providers.byName('dom')!;
      const good = jar.get(p.cookieName, APP)!;
      const expired: SessionRecord = {
        id: 'expired-' + kind,
        provider: 'app',
        userKey: 'x',
        createdAt: Date.now() - 7200_000,
        expiresAt: Date.now() - 3600_000,
        claims: { sub: 'alice', preferred_username: 'alice' } as SessionRecord['claims'],
        idToken: 'x',
      };
      await stack.outpost.store.put(expired);
      const values = [
        'garbage',
        '%E0%A4%A',
        good.slice(0, 30) + (good[30] === 'A' ? 'B' : 'A') + good.slice(31),
        good.slice(0, -4),
        encodeURIComponent(other.sessionCodec.encode({ s: 'whatever' })),
        encodeURIComponent(p.sessionCodec.encode({ s: 'no-such-session' })),
        encodeURIComponent(p.sessionCodec.encode({ s: expired.id })),
        encodeURIComponent(p.sessionCodec.encode({ x: 1 })),
      ];
      for (const v of values) {
        const res = await check(kind, { host: appHost(), target: '/private' }, { cookie: `${p.cookieName}=${v}` });
        assert.equal(res.status, kind === 'nginx' ? 401 : 302, `${v.slice(0, 16)}: ${res.status}`);
        assert.deepEqual(identityNames(res), []);
        // The bad cookie is cleared.
        assert.match(String(res.headers['set-cookie']), new RegExp(`${p.cookieName}=;`));
      }
    });
  }
});

describe('refusals', () => {
  test('missing or unparsable forwarding headers → 400 naming the header, never 2xx', async () => {
    const base = `http://127.0.0.1:${stack.port}/outpost.goauthentik.io/auth`;
    const full = { 'x-forwarded-proto': 'http', 'x-forwarded-host': appHost(), 'x-forwarded-uri': '/public/x', 'x-forwarded-method': 'GET' };
    for (const kind of ['traefik', 'caddy']) {
      for (const [name, label] of [
        ['x-forwarded-proto', 'X-Forwarded-Proto'],
        ['x-forwarded-host', 'X-Forwarded-Host'],
        ['x-forwarded-uri', 'X-Forwarded-Uri'],
        ['x-forwarded-method', 'X-Forwarded-Method'],
      ] as const) {
        const headers: Record<string, string> = { ...full };
        delete headers[name];
        const res = await httpGet(`${base}/${kind}`, { headers });
        assert.equal(res.status, 400, `${kind} without ${label}`);
        assert.ok(res.body.includes(label), `${kind}: the message names ${label}: ${res.body}`);
      }
      for (const [name, value, label] of [
        ['x-forwarded-proto', 'gopher', 'X-Forwarded-Proto'],
        ['x-forwarded-host', 'a b', 'X-Forwarded-Host'],
        ['x-forwarded-uri', 'public/x', 'X-Forwarded-Uri'],
        ['x-forwarded-uri', '/public/../private', 'X-Forwarded-Uri'],
        ['x-forwarded-method', 'G E T', 'X-Forwarded-Method'],
      ] as const) {
        const res = await httpGet(`${base}/${kind}`, { headers: { ...full, [name]: value } });
        assert.equal(res.status, 400, `${kind} with ${label}: ${value}`);
        assert.ok(res.body.includes(label));
      }
    }
    const nginx = await httpGet(`${base}/nginx`, { headers: { host: appHost() } });
    assert.equal(nginx.status, 400);
    assert.match(nginx.body, /X-Original-URL/);
    for (const bad of ['/relative', 'ftp://x/y', 'http:///nohost', `http://user@${appHost()}/public/`]) {
      const res = await httpGet(`${base}/nginx`, { headers: { host: appHost(), 'x-original-url': bad } });
      assert.equal(res.status, 400, bad);
      assert.match(res.body, /X-Original-URL/);
    }
    // A client's path that is refused gets 403 from the nginx endpoint: auth_request passes only
    // 2xx, 401 and 403 to the browser and would turn a 400 into a 500.
    for (const [path, code] of [
      ['/public/%2e%2e/private', 'forward.dot_segment'],
      ['/public/../private', 'forward.dot_segment'],
      ['/public%2F..%2Fprivate', 'request.invalid_target'],
      ['/public/..;/private', 'request.invalid_target'],
    ] as const) {
      const res = await httpGet(`${base}/nginx`, { headers: { host: appHost(), 'x-original-url': `http://${appHost()}${path}` } });
      assert.equal(res.status, 403, path);
      assert.ok(res.body.includes(code), `${path}: ${res.body}`);
    }
    // X-Original-URI with Host (the older nginx form).
    const uri = await httpGet(`${base}/nginx`, { headers: { host: appHost(), 'x-original-uri': '/public/x?y=1' } });
    assert.equal(uri.status, 200);
    // … where a client's X-Forwarded-Host is not believed: the host is Host.
    const spoofedHost = await httpGet(`${base}/nginx`, { headers: { host: appHost(), 'x-original-uri': '/anything', 'x-forwarded-host': `pub.d.localtest:${stack.port}` } });
    assert.equal(spoofedHost.status, 401);
  });

  test('an untrusted peer is refused with 403 naming trusted_proxies, on every endpoint', async () => {
    for (const kind of KINDS) {
      const res = await check(kind, { host: `${APP}:${untrusted.port}`, target: '/x' }, {}, untrusted);
      assert.equal(res.status, 403, kind);
      assert.match(res.body, /trusted_proxies/);
      assert.match(res.body, /127\.0\.0\.1/);
    }
  });

  test("a client's own X-authentik-* header is answered as usual (real identity, or none on an allowlisted path); only '_' spellings are refused", async () => {
    for (const name of ['X-authentik-username', 'x-AUTHENTIK-username', 'x-authentik-meta-foo']) {
      for (const kind of KINDS) {
        const signedIn = await check(kind, { host: appHost(), target: '/private' }, { cookie: cookieOf(), [name]: 'mallory' });
        assert.equal(signedIn.status, 200, `${kind} ${name}`);
        assert.equal(signedIn.headers['x-authentik-username'], 'alice', `${kind} ${name}: the real identity`);
        const anonymous = await check(kind, { host: appHost(), target: '/public/x' }, { [name]: 'mallory' });
        assert.equal(anonymous.status, 200, `${kind} ${name} on an allowlisted path`);
        assert.deepEqual(Object.keys(anonymous.headers).filter((h) => h.startsWith('x-authentik-')), [], `${kind}: no identity on the answer`);
      }
    }
    for (const name of ['x_authentik_username', 'X-Authentik_Groups', 'X_authentik-meta-app']) {
      for (const kind of KINDS) {
        const res = await check(kind, { host: appHost(), target: '/public/x' }, { cookie: cookieOf(), [name]: 'mallory' });
        assert.equal(res.status, 403, `${kind} ${name}`);
        assert.match(res.body, /X-authentik/i);
      }
    }
  });

  test('Envoy answers name every identity header they do not set in x-envoy-auth-headers-to-remove', async () => {
    const anonymous = await check('envoy', { host: appHost(), target: '/public/x' });
    assert.equal(anonymous.status, 200);
    const removed = String(anonymous.headers['x-envoy-auth-headers-to-remove']).split(', ');
    for (const h of ['x-authentik-username', 'x-authentik-groups', 'x-authentik-jwt', 'x-authentik-meta-version']) assert.ok(removed.includes(h), h);
    const signedIn = await check('envoy', { host: appHost(), target: '/private' }, { cookie: cookieOf() });
    assert.equal(signedIn.headers['x-authentik-username'], 'alice');
    const rest = String(signedIn.headers['x-envoy-auth-headers-to-remove'] ?? '').split(', ').filter(Boolean);
    for (const h of rest) assert.equal(signedIn.headers[h], undefined, `${h} is both set and removed`);
    assert.equal(rest.includes('x-authentik-username'), false);
    for (const kind of ['nginx', 'traefik', 'caddy'] as const) {
      assert.equal((await check(kind, { host: appHost(), target: '/public/x' })).headers['x-envoy-auth-headers-to-remove'], undefined, kind);
    }
  });

  test('Portcullis proxies nothing for a forward-mode provider: other paths are 404', async () => {
    for (const path of ['/', '/private', '/outpost.goauthentik.io/auth/unknown', '/outpost.goauthentik.io/authx']) {
      const res = await httpGet(stack.url(APP, path), { jar });
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(res.body, /"name":"upstream"/);
    }
    assert.equal(stack.upstream.requests.length, 0);
  });

  test('the forwarded target is normalized before the skip regex: encoded tricks do not match it', async () => {
    for (const kind of ['traefik', 'nginx'] as const) {
      for (const target of ['/private?/public/', '/private%2F/public/', '/private;/public/', '/private%23/public/', '//private//public/', '/%2e%2e/public/x']) {
        const res = await check(kind, { host: appHost(), target });
        assert.notEqual(res.status, 200, `${kind} ${target}`);
      }
    }
  });
  test('a forwarded URL with raw UTF-8 is read as UTF-8 and percent-encoded once', async () => {
    // On the wire the header holds the bytes C3 A9 for "é"; Node reads them as two latin1 characters.
    const raw = Buffer.from('/caf\u00e9/men\u00fc?x=1', 'utf8').toString('latin1');
    const res = await check('traefik', { host: appHost(), target: raw });
    assertLoginAtIdp(res, 'app', `http://${appHost()}`);
    // Where the browser returns after the login travels in the signed state.
    const state = new URL(String(res.headers.location)).searchParams.get('state')!;
    const p = stack.outpost.providers.byName('app')!;
    assert.equal(verifyState(state, p.stateKey, 'app')?.r, `http://${appHost()}/caf%C3%A9/men%C3%BC?x=1`);
  });
});

describe('login endpoints and signatures in the forwarded URL', () => {
  test('nginx: the outpost endpoints themselves are let through (200) and signatures are not acted on', async () => {
    const own = await check('nginx', { host: appHost(), target: '/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=x' });
    assert.equal(own.status, 200);
    assert.deepEqual(identityNames(own), []);
    // A logout signature on an ordinary path is an ordinary request for nginx (auth_request can't redirect).
    const sig = await check('nginx', { host: appHost(), target: '/private?X-authentik-logout=true' }, { cookie: cookieOf() });
    assert.equal(sig.status, 200);
    assert.equal(sig.headers['x-authentik-username'], 'alice');
    const anon = await check('nginx', { host: appHost(), target: '/private?X-authentik-logout=true' });
    assert.equal(anon.status, 401);
  });

  test('traefik: the callback signature in the forwarded URL completes the login', async () => {
    const own = new CookieJar();
    // Anonymous → 302 to the IdP (Traefik passes the flow cookie to the browser) → login form.
    const challenge = await check('traefik', { host: appHost(), target: '/after-login?k=v' });
    assertLoginAtIdp(challenge, 'app', `http://${appHost()}`);
    own.store(new URL(`http://${appHost()}/after-login?k=v`), challenge.headers['set-cookie']);
    const first = await followRedirects(String(challenge.headers.location), { jar: own });
    const form = parseForms(first.final.body, first.final.url).find((f) => f.inputTypes.password?.length)!;
    assert.ok(form, 'the IdP login form');
    const posted = await submitForm(form, { [form.inputTypes.text?.[0] ?? 'login']: 'alice', [form.inputTypes.password![0]!]: 'alice' }, { jar: own });
    assert.ok(isRedirect(posted));
    const toCallback = await followRedirects(new URL(String(posted.headers.location), posted.url).href, {
      jar: own,
      stopWhen: (r) => isRedirect(r) && String(r.headers.location).includes('X-authentik-auth-callback=true'),
    });
    const callback = new URL(String(toCallback.final.headers.location));
    assert.equal(callback.host, appHost());
    // Traefik forwards the browser's request for the callback URL to the auth endpoint.
    const flowCookie = own.header(callback);
    const res = await check('traefik', { host: appHost(), target: callback.pathname + callback.search }, { cookie: flowCookie });
    assert.equal(res.status, 302, res.body);
    assert.equal(res.headers.location, `http://${appHost()}/after-login?k=v`);
    own.store(callback, res.headers['set-cookie']);
    const after = await check('traefik', { host: appHost(), target: '/after-login?k=v' }, { cookie: own.header(callback) });
    assert.equal(after.status, 200);
    assert.equal(after.headers['x-authentik-username'], 'alice');

    // The logout signature through Envoy ends the session.
    const out = await check('envoy', { host: appHost(), target: '/?X-authentik-logout=true' }, { cookie: own.header(callback) });
    assert.equal(out.status, 302);
    const again = await check('traefik', { host: appHost(), target: '/after-login' }, { cookie: own.header(callback) });
    assertLoginAtIdp(again, 'app', `http://${appHost()}`);
  });
});
