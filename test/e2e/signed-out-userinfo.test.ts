// What the user sees at the end (the "You are signed out" page after RP-initiated sign-out) and
// the user-info endpoint for single-page applications, against the real IdP.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, submitThrough } from '../support/browserless.js';

const APP = 'app.localtest';
const TOKENS = 'tokens.localtest';
const FWD = 'fwd.localtest';
const ALICE = { username: 'alice', password: 'alice' };

let stack: Stack;

before(async () => {
  stack = await startStack({
    providers: [
      { name: 'app', host: APP, extra: { assigned_application_name: 'The Reports App' } },
      { name: 'tokens', host: TOKENS, extra: { userinfo_include_token: true } },
      { name: 'fwd', host: FWD, mode: 'forward_single' },
    ],
  });
});
after(async () => stack.close());

describe('signed-out page', () => {
  test('sign-out ends at "You are signed out" with a link back to the application, not at a new login', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(APP, '/reports'), ALICE, { jar });
    const out = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'), { jar });
    assert.equal(out.status, 302);
    const end = new URL(String(out.headers.location));
    assert.equal(end.origin, stack.idp.issuer);
    assert.equal(end.searchParams.get('post_logout_redirect_uri'), stack.url(APP, '/outpost.goauthentik.io/signed_out'));
    assert.equal(end.searchParams.get('id_token_hint')!.split('.').length, 3, 'the ID token goes as id_token_hint');
    assert.ok(end.searchParams.get('state'), 'a signed state names the application');

    const { final, hops } = await submitThrough(end.href, { jar });
    assert.ok(hops.some((h) => h.url.startsWith(stack.idp.issuer) && h.status === 303), 'the IdP ended its session');
    assert.equal(new URL(final.url).pathname, '/outpost.goauthentik.io/signed_out');
    assert.equal(final.status, 200);
    assert.equal(final.headers['cache-control'], 'no-store');
    assert.match(final.body, /<h1>You are signed out<\/h1>/);
    assert.match(final.body, /The Reports App/);
    assert.match(final.body, new RegExp(`<a href="${stack.url(APP, '/').replace(/\./g, '\\.')}">Sign in again</a>`));
    // And the session is gone: the application asks for a login again.
    const again = await httpGet(stack.url(APP, '/reports'), { jar });
    assert.equal(again.status, 302);
    assert.match(String(again.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/);
  });

  test('a valid rd on sign_out becomes the "Sign in again" link; a foreign one does not', async () => {
    for (const [rd, expected] of [
      [stack.url(APP, '/reports?month=11'), stack.url(APP, '/reports?month=11')],
      ['https://evil.example/', stack.url(APP, '/')],
    ] as const) {
      const jar = new CookieJar();
      await loginThrough(stack.url(APP, '/'), ALICE, { jar });
      const { final } = await submitThrough(stack.url(APP, `/outpost.goauthentik.io/sign_out?rd=${encodeURIComponent(rd)}`), { jar });
      assert.equal(new URL(final.url).pathname, '/outpost.goauthentik.io/signed_out');
      assert.ok(final.body.includes(`<a href="${expected.replace(/&/g, '&amp;')}">Sign in again</a>`), `${rd}: ${final.body}`);
    }
  });

  test('a forged or foreign state on the signed-out page links to external_host', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(TOKENS, '/'), ALICE, { jar });
    const out = await httpGet(stack.url(TOKENS, '/outpost.goauthentik.io/sign_out?rd=/deep'), { jar });
    const state = new URL(String(out.headers.location)).searchParams.get('state')!;
    // The other provider's state, and an altered one, are not believed.
    for (const s of [state, state.slice(0, -2) + 'AA']) {
      const res = await httpGet(stack.url(APP, `/outpost.goauthentik.io/signed_out?state=${encodeURIComponent(s)}`));
      assert.equal(res.status, 200);
      assert.ok(res.body.includes(`<a href="${stack.url(APP, '/')}">Sign in again</a>`), res.body);
    }
    const own = await httpGet(stack.url(TOKENS, `/outpost.goauthentik.io/signed_out?state=${encodeURIComponent(state)}`));
    assert.ok(own.body.includes(`<a href="${stack.url(TOKENS, '/deep')}">Sign in again</a>`), own.body);
  });

  test('without a session, sign_out shows the signed-out page', async () => {
    const res = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'));
    assert.equal(res.status, 200);
    assert.match(res.body, /You are signed out/);
  });
});

describe('userinfo', () => {
  test('401 JSON without a session, with no-store', async () => {
    const res = await httpGet(stack.url(APP, '/outpost.goauthentik.io/userinfo'), { headers: { accept: 'text/html' } });
    assert.equal(res.status, 401);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal((JSON.parse(res.body) as { error: string }).error, 'auth.required');
    // Nothing reached the upstream.
    assert.equal(stack.upstream.requests.filter((r) => r.url.includes('userinfo')).length, 0);
  });

  test('the signed-in user as JSON, never a token by default', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(APP, '/'), ALICE, { jar });
    const res = await httpGet(stack.url(APP, '/outpost.goauthentik.io/userinfo'), { jar });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.equal(res.headers['cache-control'], 'no-store');
    const info = JSON.parse(res.body) as Record<string, unknown>;
    assert.equal(info.preferred_username, 'alice');
    assert.equal(info.email, 'alice@example.com');
    assert.equal(info.name, 'Alice Demo');
    assert.deepEqual(info.groups, ['admins', 'staff']);
    assert.equal(info.provider, 'app');
    const now = Date.now() / 1000;
    assert.ok(typeof info.expires_at === 'number' && info.expires_at > now && info.expires_at <= now + 3600 + 1, String(info.expires_at));
    assert.equal('token' in info, false);
    assert.doesNotMatch(res.body, /eyJ/, 'no JWT anywhere in the answer');
  });

  test('with userinfo_include_token the answer carries the unexpired X-authentik-jwt token', async () => {
    const jar = new CookieJar();
    await loginThrough(stack.url(TOKENS, '/'), ALICE, { jar });
    const res = await httpGet(stack.url(TOKENS, '/outpost.goauthentik.io/userinfo'), { jar });
    const info = JSON.parse(res.body) as { token: string; preferred_username: string };
    assert.equal(info.preferred_username, 'alice');
    const claims = decodeJwt(info.token);
    assert.equal(claims.iss, stack.idp.issuer);
    assert.ok(claims.exp! > Date.now() / 1000);
  });

  test('through a forward-auth endpoint, /userinfo is an ordinary request to decide, not an answer', async () => {
    const jar = new CookieJar();
    const res = await httpGet(stack.url(FWD, '/outpost.goauthentik.io/auth/nginx'), {
      jar,
      headers: { 'x-original-url': `http://${FWD}:${stack.port}/outpost.goauthentik.io/userinfo` },
    });
    // nginx's decision for an anonymous request: 401 text, not the userinfo JSON.
    assert.equal(res.status, 401);
    assert.doesNotMatch(String(res.headers['content-type']), /json/);
  });
});
