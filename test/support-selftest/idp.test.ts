import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { DEMO_USERS, defaultSub, startIdentityProvider, type RunningIdp } from '../../src/demo/identity-provider.js';
import { CookieJar, followRedirects, httpGet, loginThrough, parseForms, submitThrough } from '../support/browserless.js';
import { startUpstream, type RunningUpstream } from '../support/upstream.js';

const CLIENT_ID = 'selftest';
const CLIENT_SECRET = 'selftest-secret-0123456789';
const POST_CLIENT_ID = 'selftest-post';

describe('demo identity provider', () => {
  let idp: RunningIdp;
  let app: RunningUpstream;
  let redirectPlain: string;
  let redirectWithQuery: string;
  let postLogout: string;
  let config: client.Configuration;

  before(async () => {
    app = await startUpstream({ name: 'rp' });
    redirectPlain = `${app.url}/callback`;
    redirectWithQuery = `http://app.localtest:${app.port}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`;
    postLogout = `${app.url}/logged-out`;
    idp = await startIdentityProvider({
      port: 0,
      banner: 'Portcullis selftest',
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [redirectPlain, redirectWithQuery],
          post_logout_redirect_uris: [postLogout],
        },
        {
          client_id: POST_CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [redirectPlain],
          token_endpoint_auth_method: 'client_secret_post',
        },
      ],
    });
    config = await client.discovery(new URL(idp.issuer), CLIENT_ID, CLIENT_SECRET, undefined, {
      execute: [client.allowInsecureRequests],
    });
  });

  after(async () => {
    await idp?.close();
    await app?.close();
  });

  async function authorize(cfg: client.Configuration, jar: CookieJar, extra: Record<string, string> = {}) {
    const codeVerifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(cfg, {
      redirect_uri: redirectPlain,
      scope: 'openid profile email entitlements ak_proxy goauthentik.io/api unknown_scope',
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      nonce,
      state,
      ...extra,
    });
    return { url, codeVerifier, nonce, state };
  }

  it('publishes discovery with the expected endpoints and scopes', async () => {
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, idp.issuer);
    assert.ok(meta.end_session_endpoint);
    for (const s of ['openid', 'profile', 'email', 'entitlements', 'ak_proxy']) assert.ok(meta.scopes_supported?.includes(s), s);
    assert.ok(meta.claims_supported?.includes('groups'));
    assert.ok(meta.code_challenge_methods_supported?.includes('S256'));
  });

  it('code + PKCE + nonce flow puts all scoped claims into the ID token; logout ends the session', async () => {
    const jar = new CookieJar();
    const { url, codeVerifier, nonce, state } = await authorize(config, jar);

    const login = await loginThrough(url.href, { username: 'alice', password: 'alice' }, { jar });
    // The RP's callback is the echo upstream: it answers 200 with the URL it saw.
    assert.equal(login.final.status, 200, login.final.body);
    const loginPage = login.hops.find((h) => h.status === 200 && h.body.includes('id="username"'));
    assert.ok(loginPage, 'login form was shown');
    assert.match(loginPage.body, /Portcullis selftest/);
    assert.match(loginPage.body, /<button type="submit" id="login">/);
    assert.ok(!login.hops.some((h) => /consent/i.test(h.body)), 'no consent screen');
    const callbackUrl = new URL(login.final.url);
    assert.equal(callbackUrl.pathname, '/callback');
    assert.equal(callbackUrl.searchParams.get('state'), state);

    const tokens = await client.authorizationCodeGrant(config, callbackUrl, {
      pkceCodeVerifier: codeVerifier,
      expectedNonce: nonce,
      expectedState: state,
      idTokenExpected: true,
    });
    const claims = tokens.claims()!;
    assert.equal(claims.sub, defaultSub('alice'));
    assert.equal(claims.nonce, nonce);
    assert.equal(claims.preferred_username, 'alice');
    assert.equal(claims.name, 'Alice Demo');
    assert.equal(claims.nickname, 'alice');
    assert.equal(claims.email, 'alice@example.com');
    assert.equal(claims.email_verified, true);
    assert.deepEqual(claims.groups, ['admins', 'staff']);
    assert.deepEqual(claims.entitlements, ['reports:read', 'reports:write']);
    assert.deepEqual(claims.ak_proxy, DEMO_USERS[0]!.ak_proxy);
    const idTokenPayload = decodeJwt(tokens.id_token!);
    assert.deepEqual(idTokenPayload.groups, ['admins', 'staff']);

    // userinfo answers too
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(userinfo.preferred_username, 'alice');

    // Second authorize: the IdP session is still alive, no login form.
    const again = await authorize(config, jar);
    const silent = await followRedirects(again.url.href, { jar });
    assert.equal(silent.final.status, 200);
    assert.equal(new URL(silent.final.url).pathname, '/callback');

    // RP-initiated logout: confirmation page auto-submits, then redirect to post_logout_redirect_uri.
    const endSession = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token!,
      post_logout_redirect_uri: postLogout,
      state: 'bye',
    });
    const first = await followRedirects(endSession.href, { jar });
    assert.equal(first.final.status, 200);
    assert.match(first.final.body, /id="logout"/);
    assert.match(first.final.body, /\.submit\(\)/);
    assert.ok(parseForms(first.final.body, first.final.url).some((f) => f.fields.logout === 'yes'));
    const out = await submitThrough(endSession.href, { jar });
    assert.equal(out.final.status, 200);
    const landed = new URL(out.final.url);
    assert.equal(`${landed.origin}${landed.pathname}`, postLogout);
    assert.equal(landed.searchParams.get('state'), 'bye');

    // The IdP session is gone: the next authorize shows the login form again.
    const afterLogout = await authorize(config, jar);
    const res = await followRedirects(afterLogout.url.href, { jar });
    assert.equal(res.final.status, 200);
    assert.match(res.final.body, /id="password"/);
  });

  it('refuses a wrong password and shows the form again', async () => {
    const jar = new CookieJar();
    const { url } = await authorize(config, jar);
    const res = await loginThrough(url.href, { username: 'alice', password: 'wrong' }, { jar });
    assert.equal(res.final.status, 401);
    assert.match(res.final.body, /Invalid username or password/);
    assert.match(res.final.body, /id="password"/);
    // and a correct retry on the same interaction works
    const retry = await loginThrough(res.final.url, { username: 'alice', password: 'alice' }, { jar });
    assert.equal(retry.final.status, 200);
    assert.equal(new URL(retry.final.url).pathname, '/callback');
  });

  it('accepts redirect URIs registered with a query string and proxies Host names via resolve', async () => {
    const jar = new CookieJar();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectWithQuery,
      scope: 'openid profile ak_proxy',
      state: 's1',
    });
    const res = await loginThrough(url.href, { username: 'bob', password: 'bob' }, { jar, resolve: { 'app.localtest': '127.0.0.1' } });
    assert.equal(res.final.status, 200, res.final.body);
    const landed = new URL(res.final.url);
    assert.equal(landed.host, `app.localtest:${app.port}`);
    assert.equal(landed.searchParams.get('X-authentik-auth-callback'), 'true');
    assert.ok(landed.searchParams.get('code'));
    const seen = JSON.parse(res.final.body) as { headers: Record<string, string> };
    assert.equal(seen.headers.host, `app.localtest:${app.port}`);
  });

  it('supports client_secret_post and users added at run time', async () => {
    idp.setUser({ username: 'carol', password: 'pw', groups: ['ops'], sub: 'carol-sub' });
    const cfg = await client.discovery(new URL(idp.issuer), POST_CLIENT_ID, undefined, client.ClientSecretPost(CLIENT_SECRET), {
      execute: [client.allowInsecureRequests],
    });
    const jar = new CookieJar();
    const { url, codeVerifier, nonce, state } = await authorize(cfg, jar);
    const res = await loginThrough(url.href, { username: 'carol', password: 'pw' }, { jar });
    assert.equal(res.final.status, 200);
    const tokens = await client.authorizationCodeGrant(cfg, new URL(res.final.url), {
      pkceCodeVerifier: codeVerifier,
      expectedNonce: nonce,
      expectedState: state,
    });
    const claims = tokens.claims()!;
    assert.equal(claims.sub, 'carol-sub');
    assert.deepEqual(claims.groups, ['ops']);
    assert.equal(claims.ak_proxy, undefined);
  });

  it('end_session without an IdP session still redirects to post_logout_redirect_uri', async () => {
    const url = client.buildEndSessionUrl(config, { client_id: CLIENT_ID, post_logout_redirect_uri: postLogout });
    const out = await submitThrough(url.href, { jar: new CookieJar() });
    assert.equal(out.final.status, 200);
    assert.equal(new URL(out.final.url).pathname, '/logged-out');
  });

  it('rejects unregistered redirect URIs', async () => {
    const url = client.buildAuthorizationUrl(config, { redirect_uri: `${app.url}/evil`, scope: 'openid' });
    const res = await httpGet(url.href);
    assert.equal(res.status, 400);
    assert.match(res.body, /redirect_uri/);
  });
});
