// Header authentication: parsing the Authorization header, deciding on an introspection answer,
// and the cache (keys, lifetimes, bounds, sign-out purge), with a fake introspector and clock.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import {
  HeaderAuthenticator,
  IntrospectionBound,
  IntrospectionRefusal,
  checkLocally,
  NEGATIVE_TTL_MS,
  POSITIVE_TTL_MS,
  UNAVAILABLE_TTL_MS,
  cacheKey,
  evaluateIntrospection,
  tokenOf,
  type HeaderAuthResult,
  type IntrospectionAnswer,
} from '../../../src/plugins/auth/header-auth.js';
import type { AuthStage } from '../../../src/plugins/auth/stage.js';
import type { ProviderRuntime } from '../../../src/config/provider.js';
import type { Logger } from '../../../src/pipeline/logger.js';
import type { HeaderAuthEvent } from '../../../src/pipeline/tokens.js';
import { userKeyOf } from '../../../src/sessions/store.js';
import { createHarness, type Harness } from '../support.js';

const silent = pino({ level: 'silent' }) as unknown as Logger;
const ISSUER = 'https://idp.example/application/o/app/';
const T0 = 1_700_000_000_000;

let h: Harness;
let app: ProviderRuntime;
let other: ProviderRuntime;

before(async () => {
  h = await createHarness({ discover: false });
  app = h.provider('app');
  other = h.provider('other');
});
after(() => h.close());

function answer(over: IntrospectionAnswer = {}, now = T0): IntrospectionAnswer {
  return {
    active: true,
    client_id: 'client-app',
    sub: 'alice-sub',
    exp: Math.floor(now / 1000) + 3600,
    iat: Math.floor(now / 1000),
    iss: ISSUER,
    scope: 'openid profile',
    token_type: 'Bearer',
    preferred_username: 'alice',
    groups: ['staff'],
    ...over,
  };
}

function accepted(r: HeaderAuthResult | Promise<HeaderAuthResult>): Extract<HeaderAuthResult, { kind: 'accepted' }> {
  assert.ok(!(r instanceof Promise), 'expected a synchronous answer');
  assert.equal(r.kind, 'accepted', JSON.stringify(r));
  return r as Extract<HeaderAuthResult, { kind: 'accepted' }>;
}

/** An authenticator over a fake IdP whose answer (or failure) the test sets; counts calls. */
function fake(initial: () => IntrospectionAnswer | Error | Promise<IntrospectionAnswer>, opts: { maxEntries?: number } = {}) {
  const state = {
    now: T0,
    calls: 0,
    reply: initial,
    events: [] as string[],
  };
  const auth = new HeaderAuthenticator(silent, {
    now: () => state.now,
    maxEntries: opts.maxEntries,
    introspect: async () => {
      state.calls++;
      const r = await state.reply();
      if (r instanceof Error) throw r;
      return { issuer: ISSUER, answer: r };
    },
    events: { login() {}, signOut() {}, headerAuth: (provider: string, event: HeaderAuthEvent) => void state.events.push(`${provider}:${event}`) },
  });
  return { auth, state };
}

/** The provider with other config fields (the runtime is otherwise the same). */
const withConfig = (p: ProviderRuntime, over: Partial<ProviderRuntime['config']>): ProviderRuntime => ({ ...p, config: { ...p.config, ...over } });

describe('tokenOf: what Authorization carries for Portcullis', () => {
  test('Bearer, scheme in any case, surrounding spaces ignored', () => {
    assert.equal(tokenOf('Bearer abc.def'), 'abc.def');
    assert.equal(tokenOf('bearer abc'), 'abc');
    assert.equal(tokenOf('BEARER   abc  '), 'abc');
    assert.equal(tokenOf('Bearer'), '', 'a Bearer credential without a token is ours, and empty');
  });

  test("Basic with user goauthentik.io/token: the password is the token (authentik's convention)", () => {
    assert.equal(tokenOf('Basic ' + Buffer.from('goauthentik.io/token:tok:with:colons').toString('base64')), 'tok:with:colons');
    assert.equal(tokenOf('basic ' + Buffer.from('goauthentik.io/token:abc').toString('base64')), 'abc');
  });

  test('anything else is not ours: null', () => {
    assert.equal(tokenOf(undefined), null);
    assert.equal(tokenOf('Basic ' + Buffer.from('alice:pw').toString('base64')), null);
    assert.equal(tokenOf('Basic ' + Buffer.from('GOAUTHENTIK.IO/TOKEN:abc').toString('base64')), null);
    assert.equal(tokenOf('Basic'), null);
    assert.equal(tokenOf('Digest username="a"'), null);
    assert.equal(tokenOf('Bearerabc'), null);
  });
});

describe('cacheKey', () => {
  test('same provider and token → same key; another token or provider → another key', () => {
    assert.equal(cacheKey(app, 'tok'), cacheKey(app, 'tok'));
    assert.notEqual(cacheKey(app, 'tok'), cacheKey(app, 'tok2'));
    assert.notEqual(cacheKey(app, 'tok'), cacheKey(other, 'tok'));
  });

  test('holds the issuer and client_id (every decision input), and the token only as a hash', () => {
    const token = 'secret-token-value-123';
    const key = cacheKey(app, token);
    assert.ok(!key.includes(token));
    assert.ok(key.includes(app.config.issuer));
    assert.ok(key.includes(app.config.client_id));
  });
});

describe('evaluateIntrospection', () => {
  const refusal = (over: IntrospectionAnswer) => {
    const r = evaluateIntrospection(app, ISSUER, 'tok', answer(over), T0);
    assert.equal(r.kind, 'refused', JSON.stringify(over));
    return (r as { reason: string }).reason;
  };

  test('a valid answer → a transient session of this provider', () => {
    const r = accepted(evaluateIntrospection(app, ISSUER, 'opaque-token', answer(), T0));
    const s = r.session;
    assert.equal(s.provider, 'app');
    assert.equal(s.userKey, userKeyOf(ISSUER, 'alice-sub'));
    assert.equal(s.expiresAt, (Math.floor(T0 / 1000) + 3600) * 1000);
    assert.equal(s.claims.preferred_username, 'alice');
    assert.deepEqual(s.claims.groups, ['staff']);
    assert.equal(s.claims.active, undefined);
    assert.equal(s.idToken, '');
    assert.equal(s.accessToken, undefined, 'an opaque token is no JWT for X-authentik-jwt');
    assert.match(s.id, /^header:[\w-]{43}$/);
    assert.ok(!s.id.includes('opaque-token'));
  });

  test('a JWT token becomes the accessToken (X-authentik-jwt)', () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln';
    assert.equal(accepted(evaluateIntrospection(app, ISSUER, jwt, answer(), T0)).session.accessToken, jwt);
  });

  test('ak_proxy is validated as at login', () => {
    const s = accepted(
      evaluateIntrospection(app, ISSUER, 'tok', answer({ ak_proxy: { user_attributes: { additionalHeaders: { 'X-Team': 'platform', X_Bad: 'x' } }, backend_override: 'ftp://files.example/' } }), T0),
    ).session;
    assert.deepEqual(s.proxy?.additionalHeaders, [['x-team', 'platform']]);
    assert.equal(s.proxy?.backendOrigin, undefined, 'an invalid backend_override is ignored');
  });

  test('RFC 7662 username stands in for a missing preferred_username', () => {
    assert.equal(accepted(evaluateIntrospection(app, ISSUER, 'tok', answer({ preferred_username: undefined, username: 'al' }), T0)).session.claims.preferred_username, 'al');
  });

  test('issued to this client through aud (string or list) is accepted', () => {
    accepted(evaluateIntrospection(app, ISSUER, 'tok', answer({ client_id: 'client-other', aud: 'client-app' }), T0));
    accepted(evaluateIntrospection(app, ISSUER, 'tok', answer({ client_id: undefined, aud: ['x', 'client-app'] }), T0));
  });

  test('refusals', () => {
    assert.equal(refusal({ active: false }), 'inactive');
    assert.equal(refusal({ active: 'true' }), 'inactive');
    // CVE-2024-47077: the IdP may well say "active" for another client's token.
    assert.equal(refusal({ client_id: 'client-other' }), 'issued to another client');
    assert.equal(refusal({ client_id: 'client-other', aud: ['client-other', 'client-apps'] }), 'issued to another client');
    assert.equal(refusal({ client_id: undefined }), 'issued to another client');
    assert.equal(refusal({ exp: undefined }), 'no expiry');
    assert.equal(refusal({ exp: Math.floor(T0 / 1000) }), 'expired');
    assert.equal(refusal({ nbf: Math.floor(T0 / 1000) + 3000 }), 'not yet valid');
    assert.equal(refusal({ iss: 'https://elsewhere.example/' }), 'issued by another issuer');
    assert.equal(refusal({ cnf: { jkt: 'x' } }), 'sender-constrained');
    assert.equal(refusal({ token_type: 'refresh_token' }), 'not a bearer access token');
    assert.equal(refusal({ sub: undefined }), 'no subject');
    assert.equal(refusal({ sub: '' }), 'no subject');
  });
});

describe('the cache', () => {
  test('an accepted token is answered from memory (same record) for 60 s, then asked again', async () => {
    const { auth, state } = fake(() => answer({ exp: Math.floor(T0 / 1000) + 3600 }));
    const first = await auth.authenticate(app, 'tok');
    assert.equal(first.kind, 'accepted');
    assert.equal(state.calls, 1);
    state.now += POSITIVE_TTL_MS - 1;
    const again = accepted(auth.authenticate(app, 'tok'));
    assert.equal(again.session, (first as typeof again).session, 'the same SessionRecord object (the header stage caches per record)');
    assert.equal(state.calls, 1);
    state.now += 1;
    const later = auth.authenticate(app, 'tok');
    assert.ok(later instanceof Promise, 'expired entry: asked again');
    assert.equal((await later).kind, 'accepted');
    assert.equal(state.calls, 2);
  });

  test('never past the token expiry: min(60 s, exp − now)', async () => {
    const { auth, state } = fake(() => answer({ exp: Math.floor(T0 / 1000) + 20 }));
    assert.equal((await auth.authenticate(app, 'tok')).kind, 'accepted');
    state.now += 19_999;
    accepted(auth.authenticate(app, 'tok'));
    state.now += 1;
    const r = await auth.authenticate(app, 'tok');
    assert.equal(state.calls, 2);
    assert.deepEqual(r, { kind: 'refused', reason: 'expired' });
  });

  test('the key is per provider: the same token for another provider is asked (and judged) again', async () => {
    const { auth, state } = fake(() => answer());
    assert.equal((await auth.authenticate(app, 'tok')).kind, 'accepted');
    const r = await auth.authenticate(other, 'tok');
    assert.equal(state.calls, 2);
    assert.deepEqual(r, { kind: 'refused', reason: 'issued to another client' });
  });

  test('refusals are remembered for 10 s', async () => {
    const { auth, state } = fake(() => ({ active: false }));
    assert.equal((await auth.authenticate(app, 'bad')).kind, 'refused');
    state.now += NEGATIVE_TTL_MS - 1;
    const cached = auth.authenticate(app, 'bad');
    assert.ok(!(cached instanceof Promise));
    assert.equal(cached.kind, 'refused');
    assert.equal(state.calls, 1);
    state.now += 1;
    state.reply = () => answer({ exp: Math.floor(state.now / 1000) + 3600 });
    assert.equal((await auth.authenticate(app, 'bad')).kind, 'accepted', 'asked again after 10 s');
    assert.equal(state.calls, 2);
  });

  test('the IdP refusing to look at a token is a refusal; an unreachable IdP is "unavailable", remembered 5 s', async () => {
    const { auth, state } = fake(() => new IntrospectionRefusal('unsupported_token_type'));
    const r = await auth.authenticate(app, 'jwt-ish');
    assert.equal(r.kind, 'refused');
    state.reply = () => new TypeError('fetch failed');
    assert.equal((await auth.authenticate(app, 'tok')).kind, 'unavailable');
    state.now += UNAVAILABLE_TTL_MS - 1;
    assert.equal((auth.authenticate(app, 'tok') as HeaderAuthResult).kind, 'unavailable');
    state.now += 1;
    state.reply = () => answer({ exp: Math.floor(state.now / 1000) + 3600 });
    assert.equal((await auth.authenticate(app, 'tok')).kind, 'accepted');
  });

  test('empty and oversized tokens are refused without asking', () => {
    const { auth, state } = fake(() => answer());
    assert.equal((auth.authenticate(app, '') as HeaderAuthResult).kind, 'refused');
    assert.equal((auth.authenticate(app, 'x'.repeat(9000)) as HeaderAuthResult).kind, 'refused');
    assert.equal(state.calls, 0);
  });

  test('concurrent requests with one token share one introspection', async () => {
    const { auth, state } = fake(() => answer());
    const all = await Promise.all([auth.authenticate(app, 'tok'), auth.authenticate(app, 'tok'), auth.authenticate(app, 'tok')]);
    assert.equal(state.calls, 1);
    assert.ok(all.every((r) => r.kind === 'accepted'));
  });

  test('bounded: the oldest entry goes first; refusals never evict acceptances', async () => {
    const { auth, state } = fake(() => answer(), { maxEntries: 2 });
    for (const t of ['a', 'b', 'c']) await auth.authenticate(app, t);
    assert.deepEqual(auth.size, { accepted: 2, refused: 0 });
    assert.ok(auth.authenticate(app, 'a') instanceof Promise, 'a was evicted');
    await auth.authenticate(app, 'a');
    accepted(auth.authenticate(app, 'c'));
    state.reply = () => ({ active: false });
    for (const t of ['x', 'y', 'z']) await auth.authenticate(app, t);
    assert.deepEqual(auth.size, { accepted: 2, refused: 2 });
    accepted(auth.authenticate(app, 'c'));
  });

  test("purgeUser drops that user's acceptances only, and an introspection in flight is not cached", async () => {
    let sub = 'alice-sub';
    const { auth, state } = fake(() => answer({ sub }));
    await auth.authenticate(app, 'alice-1');
    await auth.authenticate(app, 'alice-2');
    sub = 'bob-sub';
    await auth.authenticate(app, 'bob-1');
    assert.equal(auth.purgeUser(userKeyOf(ISSUER, 'alice-sub')), 2);
    assert.ok(auth.authenticate(app, 'alice-1') instanceof Promise);
    accepted(auth.authenticate(app, 'bob-1'));

    // Started before a sign-out, finished after it: used once, not remembered.
    sub = 'alice-sub';
    const pending = auth.authenticate(app, 'alice-3');
    auth.purgeUser(userKeyOf(ISSUER, 'alice-sub'));
    assert.equal((await pending).kind, 'accepted');
    const calls = state.calls;
    await auth.authenticate(app, 'alice-3');
    assert.equal(state.calls, calls + 1);
  });
});

describe('protecting the IdP', () => {
  test('IntrospectionBound: at most `concurrency` in flight, a bucket of `rate` per second', () => {
    let now = T0;
    const bound = new IntrospectionBound(2, 3, () => now);
    assert.equal(bound.tryAcquire(), true);
    assert.equal(bound.tryAcquire(), true);
    assert.equal(bound.tryAcquire(), false, 'two in flight');
    bound.release();
    assert.equal(bound.tryAcquire(), true, 'the third token of the bucket');
    bound.release();
    bound.release();
    assert.equal(bound.tryAcquire(), false, 'the bucket is empty');
    now += 333;
    assert.equal(bound.tryAcquire(), false, 'not yet one token back');
    now += 1;
    assert.equal(bound.tryAcquire(), true, '1/3 s later one call again');
    bound.release();
    now += 60_000;
    for (let i = 0; i < 3; i++) {
      assert.equal(bound.tryAcquire(), true);
      bound.release();
    }
    assert.equal(bound.tryAcquire(), false, 'the bucket never holds more than `rate`');
  });

  test('over the bound: limited, no call, not cached; the bound is per provider', async () => {
    const held: Array<() => void> = [];
    const { auth, state } = fake(() => new Promise<IntrospectionAnswer>((resolve) => held.push(() => resolve(answer()))));
    const limited = withConfig(app, { introspection_concurrency: 2, introspection_rate: 100 });
    const first = [auth.authenticate(limited, 't1'), auth.authenticate(limited, 't2')];
    await new Promise((r) => setImmediate(r));
    assert.equal(state.calls, 2);
    assert.deepEqual(await auth.authenticate(limited, 't3'), { kind: 'limited', reason: 'the introspection bound is reached' });
    assert.equal(state.calls, 2, 'no third call while two are in flight');
    const elsewhere = auth.authenticate(other, 't3');
    await new Promise((r) => setImmediate(r));
    assert.equal(state.calls, 3, "another provider's bound is its own");
    for (const release of held) release();
    state.reply = () => answer();
    await Promise.all([...first, elsewhere]);
    assert.equal((await auth.authenticate(limited, 't3')).kind, 'accepted', 'a limited token is not remembered as such');
    assert.deepEqual(
      state.events.filter((e) => e.startsWith('app:')),
      ['app:introspection', 'app:introspection', 'app:limited', 'app:introspection'],
    );
  });

  test('events: cache hits (also joining a check in flight) and local refusals are counted', async () => {
    const { auth, state } = fake(() => answer());
    await Promise.all([auth.authenticate(app, 'tok'), auth.authenticate(app, 'tok')]);
    accepted(auth.authenticate(app, 'tok'));
    auth.authenticate(app, '');
    assert.deepEqual(state.events, ['app:cache_hit', 'app:introspection', 'app:cache_hit', 'app:local_refusal'], 'the join is counted at once, the call after the local check');
  });

  test("access_token_format: opaque checks nothing locally; jwt refuses what is not a JWS with an asymmetric alg; auto leaves those to the IdP", async () => {
    const none = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln';
    const hs = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
    for (const token of ['opaque-token', none, hs, 'not.a.jws']) {
      assert.equal(await checkLocally(withConfig(app, { access_token_format: 'opaque' }), token, T0), null);
      assert.equal(await checkLocally(withConfig(app, { access_token_format: 'auto' }), token, T0), null, token);
      assert.deepEqual(await checkLocally(withConfig(app, { access_token_format: 'jwt' }), token, T0), { kind: 'refused', reason: 'not a JWT signed by the provider' });
    }
    const { auth, state } = fake(() => answer());
    assert.equal((await auth.authenticate(withConfig(app, { access_token_format: 'jwt' }), 'opaque-token')).kind, 'refused');
    assert.equal(state.calls, 0, 'refused without a call');
  });
});

describe('the auth stage', () => {
  test('without a session cookie a bearer token is checked; an unreachable IdP → headerAuth unavailable, no session', async () => {
    const stage = h.stage<AuthStage>('auth');
    const ctx = h.proxy('app', '/x', { authorization: 'Bearer some-token' });
    await stage.run(ctx);
    assert.equal(ctx.session, null);
    assert.equal(ctx.headerAuth, 'unavailable');
  });

  test('another Authorization scheme is not interpreted', async () => {
    const stage = h.stage<AuthStage>('auth');
    const ctx = h.proxy('app', '/x', { authorization: 'Digest x' });
    await stage.run(ctx);
    assert.equal(ctx.headerAuth, null);
  });

  test('a session cookie wins: the token is not looked at', async () => {
    const stage = h.stage<AuthStage>('auth');
    const s = h.session('app');
    await h.store.put(s);
    const ctx = h.proxy('app', '/x', { cookie: h.sessionCookie('app', s.id), authorization: 'Bearer some-token' });
    await stage.run(ctx);
    assert.deepEqual(ctx.session, s);
    assert.equal(ctx.headerAuth, null);
  });
});
