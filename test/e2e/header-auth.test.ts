// Header (bearer-token) authentication end to end: tokens from a real authorization-code grant at
// the real IdP (oidc-provider), introspected by Portcullis, in front of a real upstream.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';
import { accessTokenOf, clientConfigOf } from '../support/tokens.js';
import { defaultSub } from '../../src/demo/identity-provider.js';

const ALICE = { username: 'alice', password: 'alice' };
const APP = 'app.localtest';
const OTHER = 'other.localtest';
const PLAIN = 'plain.localtest';
const FWD = 'fwd.localtest';

let stack: Stack;
/** Access tokens by provider name, each from its own authorization-code grant as alice. */
const tokens = new Map<string, string>();

before(async () => {
  stack = await startStack({
    providers: [
      { name: 'app', host: APP, extra: { skip_path_regex: '^/public/' } },
      { name: 'other', host: OTHER },
      { name: 'plain', host: PLAIN, extra: { intercept_header_auth: false, skip_path_regex: '^/public/' } },
      { name: 'fwd', host: FWD, mode: 'forward_single' },
    ],
    users: [
      {
        username: 'alice',
        password: 'alice',
        name: 'Alice Liddell',
        email: 'alice@example.com',
        groups: ['admins', 'staff'],
        entitlements: ['reports:read'],
        ak_proxy: { user_attributes: { additionalHeaders: { 'X-Team': 'platform' } } },
      },
    ],
  });
  for (const name of ['app', 'other', 'fwd']) tokens.set(name, await accessTokenFor(name));
});
after(async () => stack?.close());

const clientConfig = (provider: string) => clientConfigOf(stack, provider);
/** An access token from a real authorization-code grant for the provider's client, as alice. */
const accessTokenFor = (provider: string) => accessTokenOf(stack, provider, ALICE);

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function seen(res: HttpResult): { url: string; headers: Record<string, string> } {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 300)}`);
  return JSON.parse(res.body) as { url: string; headers: Record<string, string> };
}

function assertInvalidToken(res: HttpResult): void {
  assert.equal(res.status, 401, res.body.slice(0, 300));
  assert.match(String(res.headers['www-authenticate']), /^Bearer\b.*error="invalid_token"/);
  assert.equal(res.headers.location, undefined, 'never a login redirect');
  assert.equal(res.headers['set-cookie'], undefined);
}

describe('a token issued to this provider', () => {
  test('the upstream gets the identity headers and not the Authorization header; no cookie is set', async () => {
    const before = stack.idp.introspections;
    const res = await httpGet(stack.url(APP, '/api/me?x=1'), { headers: bearer(tokens.get('app')!) });
    const s = seen(res);
    assert.equal(s.url, '/api/me?x=1');
    assert.equal(s.headers['x-authentik-username'], 'alice');
    assert.equal(s.headers['x-authentik-uid'], defaultSub('alice'));
    assert.equal(s.headers['x-authentik-email'], 'alice@example.com');
    assert.equal(s.headers['x-authentik-name'], 'Alice Liddell');
    assert.equal(s.headers['x-authentik-groups'], 'admins|staff');
    assert.equal(s.headers['x-authentik-entitlements'], 'reports:read');
    assert.equal(s.headers['x-authentik-meta-provider'], 'app');
    assert.equal(s.headers['x-team'], 'platform', 'ak_proxy additionalHeaders from the introspection answer');
    assert.equal(s.headers['x-authentik-jwt'], '', 'the IdP issues opaque access tokens: no JWT to pass on');
    assert.equal(s.headers.authorization, undefined, 'the token that authenticated the request is not forwarded');
    assert.equal(res.headers['set-cookie'], undefined, 'a bearer request gets no session cookie');
    assert.equal(stack.idp.introspections, before + 1, 'one introspection');
  });

  test('a second request (scheme in another case) is answered from the cache', async () => {
    const before = stack.idp.introspections;
    const s = seen(await httpGet(stack.url(APP, '/again'), { headers: { authorization: `bEaReR ${tokens.get('app')!}` } }));
    assert.equal(s.headers['x-authentik-username'], 'alice');
    assert.equal(s.headers.authorization, undefined);
    assert.equal(stack.idp.introspections, before, 'no introspection');
  });

  test("Basic with user goauthentik.io/token and the token as password (authentik's convention)", async () => {
    const basic = 'Basic ' + Buffer.from(`goauthentik.io/token:${tokens.get('app')!}`).toString('base64');
    const s = seen(await httpGet(stack.url(APP, '/basic'), { headers: { authorization: basic } }));
    assert.equal(s.headers['x-authentik-username'], 'alice');
    assert.equal(s.headers.authorization, undefined);
  });

  test('a session cookie wins over a token, and then the Authorization header passes unchanged', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar });
    const s = seen(await httpGet(stack.url(APP, '/with-both'), { jar, headers: { authorization: 'Bearer upstream-own-token' } }));
    assert.equal(s.headers['x-authentik-username'], 'alice');
    assert.equal(s.headers.authorization, 'Bearer upstream-own-token');
  });
});

describe('refused tokens', () => {
  test("a token issued to another client → 401 (CVE-2024-47077), though the IdP calls it active", async () => {
    const foreign = tokens.get('other')!;
    // The IdP itself does not protect: asked by client-app, it says the token is active.
    const answer = await client.tokenIntrospection(await clientConfig('app'), foreign);
    assert.equal(answer.active, true);
    assert.equal(answer.client_id, 'client-other');

    const upstreamBefore = stack.upstream.requests.length;
    assertInvalidToken(await httpGet(stack.url(APP, '/api/me'), { headers: bearer(foreign) }));
    assert.equal(stack.upstream.requests.length, upstreamBefore, 'the upstream is never reached');
    // The same token is fine where it belongs.
    assert.equal(seen(await httpGet(stack.url(OTHER, '/api/me'), { headers: bearer(foreign) })).headers['x-authentik-meta-provider'], 'other');
  });

  test('a garbage token → 401 with WWW-Authenticate, no redirect, the upstream never reached; refusals are cached', async () => {
    const upstreamBefore = stack.upstream.requests.length;
    const before = stack.idp.introspections;
    const html = await httpGet(stack.url(APP, '/private'), { headers: { ...bearer('garbage-token'), accept: 'text/html' } });
    assertInvalidToken(html);
    assert.match(String(html.headers['content-type']), /text\/html/);
    const json = await httpGet(stack.url(APP, '/private'), { headers: { ...bearer('garbage-token'), accept: 'application/json' } });
    assertInvalidToken(json);
    assert.equal(JSON.parse(json.body).error, 'auth.invalid_token');
    assert.equal(stack.upstream.requests.length, upstreamBefore);
    assert.equal(stack.idp.introspections, before + 1, 'the second refusal came from the negative cache');
  });

  test('a JWT-shaped garbage token (which the IdP refuses to introspect) → 401', async () => {
    assertInvalidToken(await httpGet(stack.url(APP, '/private'), { headers: bearer('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln') }));
  });

  test('on an allowlisted path a refused token goes on anonymously', async () => {
    const s = seen(await httpGet(stack.url(APP, '/public/x'), { headers: bearer('garbage-token') }));
    assert.equal(s.headers['x-authentik-username'], undefined);
    assert.equal(s.headers.authorization, 'Bearer garbage-token');
  });
});

describe('intercept_header_auth: false', () => {
  test('Authorization is not interpreted: a login redirect, and no introspection', async () => {
    const before = stack.idp.introspections;
    const res = await httpGet(stack.url(PLAIN, '/private'), { headers: bearer(tokens.get('app')!) });
    assert.equal(res.status, 302);
    assert.match(String(res.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/);
    assert.equal(stack.idp.introspections, before);
  });

  test('on an allowlisted path the Authorization header reaches the upstream unchanged', async () => {
    const s = seen(await httpGet(stack.url(PLAIN, '/public/x'), { headers: { authorization: 'Bearer upstream-own-token' } }));
    assert.equal(s.headers.authorization, 'Bearer upstream-own-token');
    assert.equal(s.headers['x-authentik-username'], undefined);
  });
});

describe('forward auth (nginx)', () => {
  const nginx = (headers: Record<string, string>) =>
    httpGet(`http://127.0.0.1:${stack.port}/outpost.goauthentik.io/auth/nginx`, {
      headers: { host: `${FWD}:${stack.port}`, 'x-original-url': `http://${FWD}:${stack.port}/api/x`, ...headers },
    });

  test('a valid token → 200 with the identity headers', async () => {
    const res = await nginx(bearer(tokens.get('fwd')!));
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['x-authentik-username'], 'alice');
    assert.equal(res.headers['x-authentik-uid'], defaultSub('alice'));
    assert.equal(res.headers['x-authentik-meta-provider'], 'fwd');
  });

  test('an invalid or foreign token → 401', async () => {
    assertInvalidToken(await nginx(bearer('garbage-token')));
    assertInvalidToken(await nginx(bearer(tokens.get('app')!)));
  });
});

describe('sign-out', () => {
  test("signing out purges the user's cached tokens", async () => {
    const token = tokens.get('app')!;
    seen(await httpGet(stack.url(APP, '/warm'), { headers: bearer(token) }));
    const warm = stack.idp.introspections;
    seen(await httpGet(stack.url(APP, '/cached'), { headers: bearer(token) }));
    assert.equal(stack.idp.introspections, warm, 'cached before the sign-out');

    const jar = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar });
    const out = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'), { jar });
    assert.equal(out.status, 302);

    // The token is still valid at the IdP (another IdP session): introspected again, accepted.
    seen(await httpGet(stack.url(APP, '/after'), { headers: bearer(token) }));
    assert.equal(stack.idp.introspections, warm + 1, 'introspected again after the sign-out');
  });
});

describe('the IdP goes away', () => {
  test('a cached token keeps working; an unknown one gets 503, never a redirect or the upstream', async () => {
    const token = tokens.get('app')!;
    seen(await httpGet(stack.url(APP, '/warm'), { headers: bearer(token) }));
    await stack.idp.close();
    seen(await httpGet(stack.url(APP, '/from-cache'), { headers: bearer(token) }));
    const upstreamBefore = stack.upstream.requests.length;
    const res = await httpGet(stack.url(APP, '/private'), { headers: { ...bearer('never-seen-token'), accept: 'application/json' } });
    assert.equal(res.status, 503, res.body);
    assert.equal(JSON.parse(res.body).error, 'auth.idp_unavailable');
    assert.equal(res.headers.location, undefined);
    assert.equal(stack.upstream.requests.length, upstreamBefore);
  });
});
