// Forward auth behind real reverse proxies: nginx (auth_request) and Caddy (forward_auth), each
// running the configuration that scripts/reverse-proxy-configs.ts generates (the one in docs/),
// in front of a real upstream, logging in against the test identity provider. Both modes:
// forward_single (app-<proxy>.localtest) and forward_domain (a./b./auth.<proxy>.localtest,
// cookie domain <proxy>.localtest). What is asserted is what the upstream finally receives.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, submitThrough, type HttpResult } from '../support/browserless.js';
import { startCaddy, startNginx, type LoopbackSetup, type RunningProxy } from '../support/reverse-proxies.js';

const KINDS = ['nginx', 'caddy'] as const;
type Kind = (typeof KINDS)[number];
const ALICE = { username: 'alice', password: 'alice' };

let stack: Stack;
const ports = {} as Record<Kind, number>;
const proxies = {} as Record<Kind, RunningProxy>;

before(async () => {
  for (const k of KINDS) ports[k] = await freePort();
  stack = await startStack({
    providers: KINDS.flatMap((k) => [
      {
        name: `single-${k}`,
        host: `app-${k}.localtest`,
        mode: 'forward_single' as const,
        external_host: `http://app-${k}.localtest:${ports[k]}`,
        extra: { skip_path_regex: '^/public(/|$)\n' },
      },
      {
        name: `domain-${k}`,
        host: `auth.${k}.localtest`,
        mode: 'forward_domain' as const,
        external_host: `http://auth.${k}.localtest:${ports[k]}`,
        extra: { cookie_domain: `${k}.localtest`, skip_path_regex: `^http://b\\.${k}\\.localtest(:\\d+)?/public(/|$)\n` },
      },
    ]),
  });
  const setups = (k: Kind): LoopbackSetup[] => {
    const listen = { scheme: 'http' as const, address: '127.0.0.1', port: ports[k] };
    const common = { outpost: `http://127.0.0.1:${stack.port}`, upstream: stack.upstream.url, listen };
    return [
      { ...common, mode: 'forward_single', appHosts: [`app-${k}.localtest`], nginxExtra: ['underscores_in_headers on;'] },
      { ...common, mode: 'forward_domain', appHosts: [`a.${k}.localtest`, `b.${k}.localtest`], authUrl: `http://auth.${k}.localtest:${ports[k]}`, nginxExtra: ['underscores_in_headers on;'] },
    ];
  };
  proxies.nginx = await startNginx(setups('nginx'));
  proxies.caddy = await startCaddy(setups('caddy'));
});

after(async () => {
  for (const k of KINDS) await proxies[k]?.stop();
  await stack?.close();
});

interface Seen {
  url: string;
  headers: Record<string, string>;
}
function seen(res: HttpResult): Seen {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status} for ${res.url}: ${res.body.slice(0, 300)}`);
  const body = JSON.parse(res.body) as Seen & { name?: string };
  assert.equal(body.name, 'upstream', 'the answer comes from the upstream');
  return body;
}
const location = (res: HttpResult) => String(res.headers.location ?? '');
/** Requests the upstream received since `from` whose raw headers mention `needle`. */
const upstreamSaw = (from: number, needle: RegExp) => stack.upstream.requests.slice(from).filter((r) => r.rawHeaders.some((h) => needle.test(h)));

for (const k of KINDS) {
  const url = (host: string, path: string) => `http://${host}:${ports[k]}${path}`;
  const app = `app-${k}.localtest`;

  describe(`${k}, forward_single`, () => {
    const jar = new CookieJar();

    test('anonymous: sent to the login; after it the upstream gets the identity headers and the exact URL', async () => {
      const { final, hops } = await loginThrough(url(app, '/reports/2026?month=11'), ALICE, { jar });
      const first = hops[0]!;
      assert.equal(first.status, 302);
      if (k === 'nginx') {
        // nginx's own redirect (error_page 401), made absolute by nginx; rd is not URL-encoded.
        assert.equal(location(first), `http://${app}:${ports[k]}/outpost.goauthentik.io/start?rd=http://${app}:${ports[k]}/reports/2026?month=11`);
      } else {
        // Caddy passes the challenge on as it is: straight to the IdP, the flow cookie set on the way.
        const idpUrl = new URL(location(first));
        assert.equal(idpUrl.origin, new URL(stack.idp.issuer).origin);
        assert.equal(idpUrl.searchParams.get('client_id'), `client-single-${k}`);
        assert.equal(idpUrl.searchParams.get('redirect_uri'), `http://${app}:${ports[k]}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`);
        assert.match(String(first.headers['set-cookie']), /authentik_proxy_[0-9a-f]{8}_flow=[^;]+;/);
      }
      // The callback went through the reverse proxy to Portcullis on the application host.
      assert.ok(hops.some((h) => h.url.startsWith(url(app, '/outpost.goauthentik.io/callback?X-authentik-auth-callback=true'))), hops.map((h) => h.url).join('\n'));
      const s = seen(final);
      assert.equal(s.url, '/reports/2026?month=11');
      assert.equal(s.headers['x-authentik-username'], 'alice');
      assert.equal(s.headers['x-authentik-groups'], 'admins|staff');
      assert.equal(s.headers['x-authentik-email'], 'alice@example.com');
      assert.equal(s.headers['x-authentik-meta-provider'], `single-${k}`);
      assert.match(s.headers['x-authentik-jwt'] ?? '', /^ey/);
      assert.equal(s.headers.host, `${app}:${ports[k]}`);
      for (const [name, value] of Object.entries(s.headers)) assert.doesNotMatch(String(value), /\{http\./, name);
    });

    test("a client's own identity headers never reach the upstream, signed in or on an allowlisted path; the user is not locked out", async () => {
      const from = stack.upstream.requests.length;
      const forged = { 'X-authentik-username': 'mallory', 'x-AUTHENTIK-groups': 'mallory', 'X-Authentik-Uid': 'mallory', 'X-authentik-meta-provider': 'mallory', 'X-authentik-jwt': 'mallory' };
      // Signed in: 200, the real identity replaces every forged one (issue 8 item 11).
      for (const path of ['/private', '/public/page']) {
        const s = seen(await httpGet(url(app, path), { jar, headers: forged }));
        assert.equal(s.headers['x-authentik-username'], 'alice', path);
        assert.equal(s.headers['x-authentik-groups'], 'admins|staff', path);
        assert.equal(s.headers['x-authentik-meta-provider'], `single-${k}`, path);
        assert.match(s.headers['x-authentik-jwt'] ?? '', /^ey/, path);
      }
      // Anonymous on the allowlisted path: 200 with no identity header at all.
      const anon = seen(await httpGet(url(app, '/public/page'), { headers: forged }));
      assert.deepEqual(Object.keys(anon.headers).filter((h) => h.startsWith('x-authentik')), []);
      assert.deepEqual(upstreamSaw(from, /mallory/), []);
      // Underscore spellings, which a reverse proxy cannot replace: refused.
      for (const [name, path] of [
        ['X_authentik_username', '/private'],
        ['x-AUTHENTIK_groups', '/private'],
        ['X_authentik_username', '/public/page'],
      ] as const) {
        const res = await httpGet(url(app, path), { jar, headers: { [name]: 'mallory' } });
        assert.equal(res.status, 403, `${name} on ${path}: ${res.status} ${res.body.slice(0, 200)}`);
      }
      const anonUnderscore = await httpGet(url(app, '/public/page'), { headers: { X_authentik_username: 'mallory' } });
      assert.equal(anonUnderscore.status, 403);
      assert.deepEqual(upstreamSaw(from, /mallory/), []);
    });

    test('unauthenticated path: 200 from the upstream without any identity header', async () => {
      const s = seen(await httpGet(url(app, '/public/page?x=1')));
      assert.equal(s.url, '/public/page?x=1');
      assert.deepEqual(Object.keys(s.headers).filter((h) => h.startsWith('x-authentik')), []);
    });

    test('the skip regex cannot be satisfied through the query, %2F, .., //, ; or %23', async () => {
      const from = stack.upstream.requests.length;
      for (const path of [
        '/private?/public/',
        '/private?x=/public/x',
        '/public%2F..%2Fprivate',
        '/public%2fx/../../private',
        '/public/../private',
        '/public/%2e%2e/private',
        '//private//public/',
        '/private;/public/',
        '/public/..;/private',
        '/private%23/public/',
        '/public%23/../private',
        '/private/%23/../public/',
      ]) {
        const res = await httpGet(url(app, path));
        assert.notEqual(res.status, 200, `${path} was let through: ${res.body.slice(0, 200)}`);
        // Never a 500: the nginx endpoint refuses a client's path with 403, which auth_request passes on.
        assert.ok([302, 400, 401, 403].includes(res.status), `${path}: ${res.status}`);
      }
      assert.deepEqual(stack.upstream.requests.slice(from).map((r) => r.url), []);
    });

    test('a tampered, malformed or stale session cookie is exactly no cookie (CVE-2026-25748)', async () => {
      const p = stack.outpost.providers.byName(`single-${k}`)!;
      const good = jar.get(p.cookieName, app)!;
      assert.ok(good);
      const flipped = good.slice(0, 20) + (good[20] === 'A' ? 'B' : 'A') + good.slice(21);
      const from = stack.upstream.requests.length;
      for (const value of [flipped, good.slice(0, -3), 'garbage', '', '%%%']) {
        const res = await httpGet(url(app, '/private'), { headers: { cookie: `${p.cookieName}=${value}` } });
        assert.equal(res.status, 302, `cookie ${value.slice(0, 12)}…: ${res.status}`);
        assert.match(location(res), k === 'nginx' ? /\/outpost\.goauthentik\.io\/start\?rd=/ : /[?&]client_id=client-single-/);
      }
      assert.equal(stack.upstream.requests.length, from);
    });

    test('redirect-target tricks at start are refused', async () => {
      for (const rd of ['//evil.localtest/x', 'http://evil.localtest/', `http://${app}:${ports[k]}@evil.localtest/`, 'javascript:alert(1)', `http://${app}.evil.localtest:${ports[k]}/`]) {
        const res = await httpGet(url(app, `/outpost.goauthentik.io/start?rd=${encodeURIComponent(rd)}`));
        assert.equal(res.status, 302);
        assert.equal(stateRedirect(location(res)), `http://${app}:${ports[k]}/`, rd);
      }
    });

    test('a path that is neither the login nor forward auth is not proxied by Portcullis: 404', async () => {
      const res = await httpGet(url(app, '/outpost.goauthentik.io/elsewhere'), { jar });
      assert.equal(res.status, 404);
      // Straight to Portcullis (not through the proxy), signed in or not: nothing is proxied.
      for (const opts of [{ jar }, {}]) {
        const direct = await httpGet(`http://127.0.0.1:${stack.port}/private`, { ...opts, headers: { host: `${app}:${ports[k]}` } });
        assert.equal(direct.status, 404);
        assert.match(direct.body, /proxies nothing/);
      }
    });

    test('sign-out through the proxy ends the session', async () => {
      const before = seen(await httpGet(url(app, '/private'), { jar }));
      assert.equal(before.headers['x-authentik-username'], 'alice');
      const kept = jar.get(stack.outpost.providers.byName(`single-${k}`)!.cookieName, app)!;
      await submitThrough(url(app, '/outpost.goauthentik.io/sign_out'), { jar });
      const res = await httpGet(url(app, '/private'), { headers: { cookie: `${stack.outpost.providers.byName(`single-${k}`)!.cookieName}=${kept}` } });
      assert.equal(res.status, 302, 'the old cookie no longer works');
    });
  });

  describe(`${k}, forward_domain`, () => {
    const jar = new CookieJar();
    const a = `a.${k}.localtest`;
    const b = `b.${k}.localtest`;
    const auth = `auth.${k}.localtest`;

    test('one login on a. lets b. through; start and callback live on the auth host', async () => {
      const { final, hops } = await loginThrough(url(a, '/dashboard?tab=2'), ALICE, { jar });
      assert.equal(hops[0]!.status, 302);
      const startUrl = new URL(location(hops[0]!), hops[0]!.url);
      if (k === 'nginx') {
        assert.equal(startUrl.host, `${auth}:${ports[k]}`);
        assert.equal(startUrl.pathname, '/outpost.goauthentik.io/start');
        assert.equal(startUrl.searchParams.get('rd'), `http://${a}:${ports[k]}/dashboard?tab=2`);
      } else {
        // Straight to the IdP; the callback is on the auth host.
        assert.equal(startUrl.origin, new URL(stack.idp.issuer).origin);
        assert.equal(startUrl.searchParams.get('redirect_uri'), `http://${auth}:${ports[k]}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`);
      }
      assert.ok(hops.some((h) => h.url.startsWith(url(auth, '/outpost.goauthentik.io/callback?'))));
      const sa = seen(final);
      assert.equal(sa.url, '/dashboard?tab=2');
      assert.equal(sa.headers['x-authentik-username'], 'alice');
      const p = stack.outpost.providers.byName(`domain-${k}`)!;
      assert.equal(jar.getCookie(p.cookieName)!.domain, `${k}.localtest`);
      assert.equal(jar.getCookie(p.cookieName)!.hostOnly, false);
      const sb = seen(await httpGet(url(b, '/other'), { jar }));
      assert.equal(sb.headers['x-authentik-username'], 'alice');
      assert.equal(sb.headers['x-authentik-meta-provider'], `domain-${k}`);
    });

    test('the URL regex sees scheme://host/path, never the query: public only on b.', async () => {
      const from = stack.upstream.requests.length;
      const pub = seen(await httpGet(url(b, '/public/x'), { headers: { 'X-authentik-username': 'mallory', 'X-Authentik-Email': 'mallory@example.com' } }));
      assert.deepEqual(Object.keys(pub.headers).filter((h) => h.startsWith('x-authentik')), [], 'a forged identity on an allowlisted path is removed');
      for (const path of [`/private?u=http://${b}/public/`, `/private?http://${b}:${ports[k]}/public/`, '/public/x']) {
        const res = await httpGet(url(a, path));
        assert.notEqual(res.status, 200, `${a}${path}`);
      }
      assert.equal(stack.upstream.requests.length, from + 1);
    });

    test('rd must be on the cookie domain (dot boundary) or the auth host', async () => {
      const ok = await httpGet(url(auth, `/outpost.goauthentik.io/start?rd=${encodeURIComponent(`http://b.${k}.localtest:${ports[k]}/x`)}`));
      assert.equal(stateRedirect(location(ok)), `http://b.${k}.localtest:${ports[k]}/x`);
      for (const rd of [`http://evil${k}.localtest/`, `http://${k}.localtest.evil.test/`, `//x.${k}.localtest/`, 'https://example.com/']) {
        const res = await httpGet(url(auth, `/outpost.goauthentik.io/start?rd=${encodeURIComponent(rd)}`));
        assert.equal(stateRedirect(location(res)), `http://${auth}:${ports[k]}/`, rd);
      }
    });

    test('sign-out on the auth host ends the shared session for every host', async () => {
      const p = stack.outpost.providers.byName(`domain-${k}`)!;
      const kept = jar.get(p.cookieName, b)!;
      await submitThrough(url(auth, '/outpost.goauthentik.io/sign_out'), { jar });
      for (const host of [a, b]) {
        const res = await httpGet(url(host, '/private'), { headers: { cookie: `${p.cookieName}=${kept}` } });
        assert.equal(res.status, 302, host);
      }
    });
  });
}

/** The post-login redirect signed into the `state` of an IdP authorization URL. */
function stateRedirect(authorizeUrl: string): string {
  const state = new URL(authorizeUrl).searchParams.get('state') ?? '';
  return (JSON.parse(Buffer.from(state.split('.')[0]!, 'base64url').toString('utf8')) as { r: string }).r;
}
