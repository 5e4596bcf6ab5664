// The header stage, run directly on contexts from the outpost's context factory.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTINUE, type RequestContext, type Stage } from '../../../src/pipeline/contract.js';
import { VERSION_STRING } from '../../../src/version.js';
import { createHarness, pairsOf, TRUSTED_PEER, UNTRUSTED_PEER, valuesOf, type Harness } from '../support.js';

let h: Harness;
let headers: Stage;

before(async () => {
  h = await createHarness();
  headers = h.stage('headers');
});
after(() => h.close());

function run(ctx: RequestContext): RequestContext {
  assert.equal(headers.run(ctx), CONTINUE);
  return ctx;
}

const AK_PROXY = {
  user_attributes: {
    additionalHeaders: { 'X-Team': 'platform', 'X-Count': 3, 'X-Flag': true, 'X-Off': false, 'X-Ratio': 0.5 },
  },
};

function appSession() {
  return h.session('app', { claims: { groups: ['admins', 'staff', 42, 'on-call'], entitlements: ['reports:read', 'reports:write'], ak_proxy: AK_PROXY } });
}

describe('identity headers of a session', () => {
  test('the standard set, groups and entitlements joined with |, additionalHeaders numbers/booleans as text', () => {
    const session = appSession();
    const ctx = h.proxy('app', '/reports');
    ctx.session = session;
    run(ctx);
    const app = h.provider('app');
    assert.ok(app.oidc.jwksUri.startsWith(h.issuer), 'discovery gave a jwks_uri');
    assert.deepEqual(ctx.identityHeaders, {
      'x-authentik-username': 'alice',
      'x-authentik-groups': 'admins|staff|on-call',
      'x-authentik-entitlements': 'reports:read|reports:write',
      'x-authentik-email': 'alice@example.com',
      'x-authentik-name': 'Alice Example',
      'x-authentik-uid': 'alice-sub',
      'x-authentik-jwt': 'id.token.jwt',
      'x-authentik-meta-jwks': app.oidc.jwksUri,
      'x-authentik-meta-outpost': 'test outpost',
      'x-authentik-meta-provider': 'app',
      'x-authentik-meta-app': 'app',
      'x-authentik-meta-version': `portcullis/${VERSION_STRING}`,
      'x-team': 'platform',
      'x-count': '3',
      'x-flag': 'true',
      'x-off': 'false',
      'x-ratio': '0.5',
    });
  });

  test('the access token, when there is one, is the JWT header; missing claims are empty strings', () => {
    const ctx = h.proxy('app', '/');
    ctx.session = h.session('app', { accessToken: 'access.token.jwt', claims: { groups: 'admins', entitlements: undefined, name: undefined } });
    run(ctx);
    assert.equal(ctx.identityHeaders!['x-authentik-jwt'], 'access.token.jwt');
    assert.equal(ctx.identityHeaders!['x-authentik-groups'], '', 'groups that are not a list');
    assert.equal(ctx.identityHeaders!['x-authentik-entitlements'], '');
    assert.equal(ctx.identityHeaders!['x-authentik-name'], '');
  });

  test('control characters are removed and non-Latin-1 text is sent as UTF-8 bytes', () => {
    const ctx = h.proxy('app', '/');
    ctx.session = h.session('app', { claims: { name: 'Zoë\r\nX-Evil: 1', preferred_username: '李' } });
    run(ctx);
    assert.equal(ctx.identityHeaders!['x-authentik-name'], Buffer.from('ZoëX-Evil: 1', 'utf8').toString('latin1'));
    assert.equal(ctx.identityHeaders!['x-authentik-username'], Buffer.from('李', 'utf8').toString('latin1'));
  });

  test('basic auth when enabled: user attribute (else email) and password attribute', () => {
    const basic = (attrs: Record<string, unknown>) => {
      const ctx = h.proxy('basic', '/');
      ctx.session = h.session('basic', { claims: { ak_proxy: { user_attributes: attrs } } });
      return run(ctx).identityHeaders!;
    };
    const b64 = (s: string) => 'Basic ' + Buffer.from(s, 'utf8').toString('base64');
    assert.equal(basic({ basic_user: 'alice-basic', basic_password: 's3cret' }).authorization, b64('alice-basic:s3cret'));
    assert.equal(basic({ basic_password: 's3cret' }).authorization, b64('alice@example.com:s3cret'));
    assert.equal(basic({ basic_user: 'alice-basic' }).authorization, undefined, 'no password, no header');
    assert.equal(basic({ basic_user: 'alice-basic', basic_password: 7 }).authorization, undefined, 'a non-string password is ignored');
  });

  test('no basic auth when the provider does not enable it', () => {
    const ctx = h.proxy('app', '/');
    ctx.session = h.session('app', { claims: { ak_proxy: { user_attributes: { basic_user: 'u', basic_password: 'p' } } } });
    assert.equal(run(ctx).identityHeaders!.authorization, undefined);
  });

  test('built once per session: the same object on a second run, another for another session', () => {
    const session = appSession();
    const a = h.proxy('app', '/one');
    a.session = session;
    const b = h.proxy('app', '/two');
    b.session = session;
    run(a);
    run(b);
    assert.ok(a.identityHeaders !== null);
    assert.equal(b.identityHeaders, a.identityHeaders);
    const c = h.proxy('app', '/three');
    c.session = appSession();
    run(c);
    assert.notEqual(c.identityHeaders, a.identityHeaders);
    assert.deepEqual(c.identityHeaders, a.identityHeaders);
  });

  test('the cache hits with a store that hands back a new object for every read: keyed by session id and issue time', () => {
    const session = appSession();
    const a = h.proxy('app', '/one');
    a.session = session;
    run(a);
    const b = h.proxy('app', '/two');
    b.session = structuredClone(session); // what a decoding store returns: equal, not the same object
    run(b);
    assert.equal(b.identityHeaders, a.identityHeaders, 'the same built headers for another copy of the same session');
    // A record issued anew under the same id (a bearer token validated again) is built anew.
    const reissued = h.proxy('app', '/three');
    reissued.session = { ...structuredClone(session), createdAt: session.createdAt + 1, claims: { ...session.claims, preferred_username: 'bob' } };
    run(reissued);
    assert.notEqual(reissued.identityHeaders, a.identityHeaders);
    assert.equal(reissued.identityHeaders!['x-authentik-username'], 'bob');
    // A refresh keeps id and createdAt; its new tokens, claims and settings are a new tokensIssuedAt.
    const refreshed = h.proxy('app', '/four');
    refreshed.session = { ...structuredClone(session), tokensIssuedAt: session.createdAt + 60_000, idToken: 'refreshed.id.token', claims: { ...session.claims, groups: ['admins'] } };
    run(refreshed);
    assert.equal(refreshed.identityHeaders!['x-authentik-jwt'], 'refreshed.id.token');
    assert.equal(refreshed.identityHeaders!['x-authentik-groups'], 'admins');
  });

  test('anonymous: no identity headers', () => {
    const ctx = h.proxy('app', '/public/x');
    ctx.allowlisted = true;
    run(ctx);
    assert.equal(ctx.identityHeaders, null);
  });

  test('forward entries get identityHeaders but no upstream list', () => {
    const ctx = h.nginx('https://fwd.localtest/x', { cookie: 'a=b', 'x-custom': '1' });
    ctx.session = h.session('fwd');
    run(ctx);
    assert.equal(ctx.identityHeaders!['x-authentik-username'], 'alice');
    assert.equal(ctx.identityHeaders!['x-authentik-meta-provider'], 'fwd');
    assert.equal(ctx.upstreamHeaders, null);
    const anon = h.traefik('https://fwd.localtest/public/x');
    run(anon);
    assert.equal(anon.identityHeaders, null);
    assert.equal(anon.upstreamHeaders, null);
  });
});

describe('the upstream header list', () => {
  const HOSTILE = {
    'user-agent': 'UA/1.0',
    accept: 'text/html',
    'x-app-header': 'kept',
    'x-authentik-username': 'mallory',
    'x-authentik-groups': 'admins',
    x_authentik_groups: 'admins',
    'x-authentik_email': 'mallory@example.com',
    'x-authentik-anything-new': 'x',
    'x-team': 'spoofed-team',
    x_team: 'spoofed-team-2',
    'x-count': '999',
    x_count: '998',
    'x-forwarded-for': '6.6.6.6',
    x_forwarded_for: '6.6.6.7',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': 'evil.example',
    'x-forwarded-port': '1',
    'x-forwarded-uri': '/admin',
    'x-real-ip': '6.6.6.6',
    forwarded: 'for=6.6.6.6',
    'x-original-url': 'https://app.localtest/admin',
    connection: 'keep-alive, X-Secret-Hop',
    'x-secret-hop': 'must go',
    'keep-alive': 'timeout=5',
    te: 'trailers',
    upgrade: 'h2c',
    trailer: 'x',
    'proxy-authorization': 'Basic Zm9vOmJhcg==',
    'proxy-connection': 'keep-alive',
    some_underscore_header: 'dropped',
  };

  function upstreamOf(ctx: RequestContext): string[] {
    run(ctx);
    assert.ok(ctx.upstreamHeaders !== null, 'proxy entries get an upstream list');
    return ctx.upstreamHeaders;
  }

  test('is a flat [name, value, …] list with lower-case names', () => {
    const ctx = h.proxy('app', '/', { 'user-agent': 'UA' });
    ctx.session = appSession();
    const list = upstreamOf(ctx);
    assert.equal(list.length % 2, 0);
    for (const [name, value] of pairsOf(list)) {
      assert.equal(typeof value, 'string', name);
      assert.equal(name, name.toLowerCase());
    }
  });

  test('authenticated: client identity headers in every spelling, forged X-Forwarded-*, hop-by-hop and Connection-listed headers are dropped', () => {
    const session = appSession();
    const ctx = h.proxy('app', '/reports?x=1', HOSTILE);
    ctx.session = session;
    const list = upstreamOf(ctx);
    const pairs = pairsOf(list);
    const names = pairs.map(([n]) => n);
    for (const [name, value] of pairs) {
      assert.ok(!name.includes('_'), `no underscore names upstream: ${name}`);
      assert.notEqual(value, 'mallory', name);
      assert.notEqual(value, 'mallory@example.com', name);
      assert.ok(!value.startsWith('spoofed'), `spoofed value in ${name}`);
      assert.ok(!['6.6.6.6', '6.6.6.7', 'evil.example', 'for=6.6.6.6', 'h2c', 'must go'].includes(value), `client value ${value} in ${name}`);
    }
    for (const name of ['x-authentik-anything-new', 'x-forwarded-port', 'x-forwarded-uri', 'x-real-ip', 'forwarded', 'x-original-url', 'connection', 'x-secret-hop', 'keep-alive', 'te', 'upgrade', 'trailer', 'proxy-authorization', 'proxy-connection', 'host']) {
      assert.ok(!names.includes(name), `${name} is dropped`);
    }
    // Every identity header appears once, with the session's value.
    for (const [name, value] of Object.entries(ctx.identityHeaders!)) assert.deepEqual(valuesOf(list, name), [value], name);
    assert.deepEqual(valuesOf(list, 'x-count'), ['3']);
    // The app's own headers pass.
    assert.deepEqual(valuesOf(list, 'user-agent'), ['UA/1.0']);
    assert.deepEqual(valuesOf(list, 'accept'), ['text/html']);
    assert.deepEqual(valuesOf(list, 'x-app-header'), ['kept']);
  });

  test('anonymous (allowlisted) requests: client X-authentik-* headers are dropped all the same', () => {
    const ctx = h.proxy('app', '/public/x', HOSTILE);
    ctx.allowlisted = true;
    const list = upstreamOf(ctx);
    for (const [name] of pairsOf(list)) {
      assert.ok(!name.replace(/_/g, '-').startsWith('x-authentik-'), name);
      assert.ok(!name.includes('_'), name);
    }
    assert.deepEqual(valuesOf(list, 'x-forwarded-for'), [UNTRUSTED_PEER]);
    assert.deepEqual(valuesOf(list, 'x-app-header'), ['kept']);
    // Without a session nothing names x-team: the app's own header of that name passes.
    assert.deepEqual(valuesOf(list, 'x-team'), ['spoofed-team']);
  });

  test('additionalHeaders named with _ are never sent, and a client copy spelled with - does not pass either', () => {
    // `X_Under` is a valid token, but servers that fold `_` into `-` (CGI, WSGI, PHP…) could not
    // tell it from a client's `x-under`; like authentik, Portcullis sends no `_` names at all.
    const ctx = h.proxy('app', '/', { 'x-under': 'spoofed' });
    ctx.session = h.session('app', { claims: { ak_proxy: { user_attributes: { additionalHeaders: { X_Under: 'from-claims', 'X-Fine': 'yes' } } } } });
    const list = upstreamOf(ctx);
    assert.equal(ctx.identityHeaders!['x_under'], undefined);
    assert.equal(ctx.identityHeaders!['x-fine'], 'yes');
    assert.deepEqual(valuesOf(list, 'x_under'), []);
    assert.deepEqual(valuesOf(list, 'x-fine'), ['yes']);
    // A session stored with such a name (before validation dropped them) does not send it either.
    const old = h.proxy('app', '/', { 'x-under': 'spoofed' });
    old.session = h.session('app', { proxy: { additionalHeaders: [['x_under', 'stored']] } });
    const oldList = upstreamOf(old);
    assert.equal(old.identityHeaders!['x_under'], undefined);
    assert.deepEqual(valuesOf(oldList, 'x_under'), []);
  });

  test('X-Forwarded-For/Proto/Host are added once; an untrusted peer\'s X-Forwarded-For is replaced by its address', () => {
    const ctx = h.proxy('app', '/', { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'other.localtest:8443' });
    assert.equal(ctx.peerTrusted, false);
    const list = upstreamOf(ctx);
    assert.deepEqual(valuesOf(list, 'x-forwarded-for'), [UNTRUSTED_PEER]);
    assert.deepEqual(valuesOf(list, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(valuesOf(list, 'x-forwarded-host'), ['app.localtest']);
  });

  test('a trusted peer\'s X-Forwarded-For is extended with the peer; proto and host are what the context decided', () => {
    const ctx = h.ctx({ url: '/', host: 'internal-lb:9000', peer: TRUSTED_PEER, encrypted: false, headers: { 'x-forwarded-for': '203.0.113.5, 198.51.100.2', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app.localtest' } });
    assert.equal(ctx.peerTrusted, true);
    const list = upstreamOf(ctx);
    assert.deepEqual(valuesOf(list, 'x-forwarded-for'), [`203.0.113.5, 198.51.100.2, ${TRUSTED_PEER}`]);
    assert.deepEqual(valuesOf(list, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(valuesOf(list, 'x-forwarded-host'), ['app.localtest']);
  });

  test('cookies: Portcullis\'s session and flow cookies are removed, the app\'s kept in order', () => {
    const app = h.provider('app');
    const cookie = `theme=dark; ${app.cookieName}=abc; ${app.flowCookieName}=def; _ga=GA1.2.3; lang=en`;
    const ctx = h.proxy('app', '/', { cookie });
    ctx.session = appSession();
    assert.deepEqual(valuesOf(upstreamOf(ctx), 'cookie'), ['theme=dark; _ga=GA1.2.3; lang=en']);
    // A cookie whose name merely contains ours is the app's.
    const lookalike = h.proxy('app', '/', { cookie: `x${app.cookieName}=1; ${app.cookieName}x=2` });
    assert.deepEqual(valuesOf(upstreamOf(lookalike), 'cookie'), [`x${app.cookieName}=1; ${app.cookieName}x=2`]);
  });

  test('cookies: no Cookie header at all when only Portcullis\'s cookies were sent', () => {
    const app = h.provider('app');
    const ctx = h.proxy('app', '/', { cookie: `${app.cookieName}=abc; ${app.flowCookieName}=def` });
    ctx.session = appSession();
    assert.deepEqual(valuesOf(upstreamOf(ctx), 'cookie'), []);
  });

  test('Authorization: passed through normally, dropped when the provider uses basic auth', () => {
    const plain = h.proxy('app', '/', { authorization: 'Bearer app-token' });
    plain.session = appSession();
    assert.deepEqual(valuesOf(upstreamOf(plain), 'authorization'), ['Bearer app-token']);

    const withPassword = h.proxy('basic', '/', { authorization: 'Basic bWFsbG9yeTp4' });
    withPassword.session = h.session('basic', { claims: { ak_proxy: { user_attributes: { basic_password: 'pw' } } } });
    assert.deepEqual(valuesOf(upstreamOf(withPassword), 'authorization'), ['Basic ' + Buffer.from('alice@example.com:pw').toString('base64')]);

    const noPassword = h.proxy('basic', '/', { authorization: 'Basic bWFsbG9yeTp4' });
    noPassword.session = h.session('basic');
    assert.deepEqual(valuesOf(upstreamOf(noPassword), 'authorization'), [], 'no client credentials reach a basic-auth upstream');
  });

  test('Authorization: dropped when it carried the bearer token that authenticated the request', () => {
    const viaToken = h.proxy('app', '/', { authorization: 'Bearer app-token' });
    viaToken.session = appSession();
    viaToken.headerAuth = 'accepted';
    assert.deepEqual(valuesOf(upstreamOf(viaToken), 'authorization'), []);
    assert.equal(valuesOf(upstreamOf(viaToken), 'x-authentik-username')[0], 'alice', 'identity headers as for a cookie session');

    // A refused token on an allowlisted path is not Portcullis's: it goes on untouched.
    const refused = h.proxy('app', '/public/x', { authorization: 'Bearer not-ours' });
    refused.headerAuth = 'refused';
    assert.deepEqual(valuesOf(upstreamOf(refused), 'authorization'), ['Bearer not-ours']);
  });

  test('a second run on the same context rebuilds the list (no duplicates)', () => {
    const ctx = h.proxy('app', '/', { 'user-agent': 'UA' });
    ctx.session = appSession();
    const first = upstreamOf(ctx).slice();
    assert.deepEqual(upstreamOf(ctx), first);
  });
});
