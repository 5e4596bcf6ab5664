// Interoperability with a second, independent OpenID Provider: LemonLDAP::NG 2.16 from Debian
// (see test/support/lemonldap.ts), its Demo users, served through nginx. Portcullis is registered
// as relying parties in LemonLDAP's own configuration, as docs/identity-providers.md describes, and
// everything asserted is what the upstream (directly, or behind nginx's auth_request) receives.
//
// LemonLDAP's defaults that matter here: the ID token carries no user claims (they are served at
// userinfo only), introspection answers carry none either, a user in one group gets `"groups":
// "users"` (a string), and its Basic client authentication does not form-decode the credentials.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { nginxConfig } from '../../scripts/reverse-proxy-configs.js';
import { VERSION_STRING } from '../../src/version.js';
import { startLemonldap, LLNG_USERS, type RunningLemonldap } from '../support/lemonldap.js';
import { startUpstream, type RunningUpstream } from '../support/upstream.js';
import { freePort } from '../support/stack.js';
import { CookieJar, decodeEntities, followRedirects, httpGet, loginThrough, submitThrough, type HttpResult } from '../support/browserless.js';

const DWHO = { username: 'dwho', password: 'dwho' };
const RTYLER = { username: 'rtyler', password: 'rtyler' };
const APP = 'app.localtest';
const POST = 'post.localtest';
const BASIC = 'basic.localtest';
const FWD = 'fwd.localtest';
const FC = 'fc.localtest';
const FCSID = 'fcsid.localtest';
/** Portcullis's warnings and errors (the guessable-sid warning). */
const warnings: Record<string, unknown>[] = [];

let llng: RunningLemonldap;
let upstream: RunningUpstream;
let outpost: Outpost;
let port: number;
let fwdPort: number;
let dir: string;
const url = (host: string, path = '/') => `http://${host}:${port}${path}`;
const fwdUrl = (path = '/') => `http://${FWD}:${fwdPort}${path}`;
const callbackOf = (base: string) => `${base.replace(/\/$/, '')}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`;
/** Client credentials with the characters that form-encoding changes: `-`, `_`, `.`, `~`. */
const UNSAFE_ID = 'portcullis-post.app';
const UNSAFE_SECRET = `s3cr_et-${randomBytes(8).toString('hex')}.~x`;
const APP_SECRET = randomBytes(16).toString('hex');

/** Claims as LemonLDAP sends them for Portcullis: rtyler is made a member of one group only. */
const CLAIMS = { preferred_username: 'uid', name: 'cn', email: 'mail', groups: 'portcullisGroups', email_verified: 'emailVerified' };
const MACROS = { portcullisGroups: '$uid eq "rtyler" ? "users" : $groups', emailVerified: '"true"' };

function seen(res: HttpResult): { url: string; headers: Record<string, string> } {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status} for ${res.url}: ${res.body.slice(0, 400)}\n${llng.logs().slice(-1500)}`);
  const body = JSON.parse(res.body) as { name: string; url: string; headers: Record<string, string> };
  assert.equal(body.name, 'upstream');
  return body;
}
const groupsOf = (h: Record<string, string>) => (h['x-authentik-groups'] ?? '').split('|').sort();

before(async () => {
  port = await freePort();
  fwdPort = await freePort();
  dir = mkdtempSync(join(tmpdir(), 'portcullis-llng-test-'));
  upstream = await startUpstream();
  const rp = (key: string, clientId: string, clientSecret: string, base: string) => ({
    key,
    clientId,
    clientSecret,
    redirectUris: [callbackOf(base)],
    postLogoutRedirectUris: [`${base.replace(/\/$/, '')}/outpost.goauthentik.io/signed_out`],
    claims: CLAIMS,
    macros: MACROS,
  });
  llng = await startLemonldap({
    relyingParties: [
      { ...rp('app', 'portcullisapp', APP_SECRET, url(APP)), allowPasswordGrant: true },
      rp('post', UNSAFE_ID, UNSAFE_SECRET, url(POST)),
      rp('basic', 'portcullis-basic.app', UNSAFE_SECRET, url(BASIC)),
      rp('fwd', 'portcullisfwd', APP_SECRET, fwdUrl()),
      {
        ...rp('fc', 'portcullisfc', APP_SECRET, url(FC)),
        // LemonLDAP 2.16's front-channel logout sends sid = the user's id (its ID tokens carry no
        // sid): an ID token claim `sid` with the same value lets Portcullis match it.
        claims: { ...CLAIMS, sid: 'uid' },
        idTokenForceClaims: true,
        frontchannelLogoutUri: url(FC, '/outpost.goauthentik.io/frontchannel_logout'),
      },
      // The same sid at a provider left at frontchannel_logout: sid (the default).
      { ...rp('fcsid', 'portcullisfcsid', APP_SECRET, url(FCSID)), claims: { ...CLAIMS, sid: 'uid' }, idTokenForceClaims: true },
    ],
    // nginx in front of the application, asking Portcullis (forward_single), as docs/ show.
    extraServers: nginxConfig({
      mode: 'forward_single',
      outpost: `http://127.0.0.1:${port}`,
      upstream: upstream.url,
      appHosts: [FWD],
      listen: { scheme: 'http', address: '127.0.0.1', port: fwdPort },
    }),
    extraPorts: [fwdPort],
  });
  const provider = (name: string, host: string, clientId: string, clientSecret: string, extra: Record<string, unknown> = {}) => ({
    name,
    issuer: llng.issuer,
    client_id: clientId,
    client_secret: clientSecret,
    cookie_secret: randomBytes(24).toString('base64url'),
    external_host: url(host),
    internal_host: upstream.url,
    access_rules: [
      { name: 'timelords only', paths: ['^/tardis(/|$)'], when: '"timelords" in claims.groups' },
      { name: 'verified users', paths: ['^/verified(/|$)'], when: '"users" in claims.groups && claims.email_verified == true' },
    ],
    ...extra,
  });
  const config = {
    outpost: { name: 'llng outpost', listeners: { http: `127.0.0.1:${port}`, https: null }, session_store: { type: 'embedded', path: join(dir, 'sessions.jsonl') }, log_level: 'silent' },
    providers: [
      provider('app', APP, 'portcullisapp', APP_SECRET),
      provider('post', POST, UNSAFE_ID, UNSAFE_SECRET, { token_endpoint_auth_method: 'client_secret_post' }),
      provider('basic', BASIC, 'portcullis-basic.app', UNSAFE_SECRET),
      // LemonLDAP's sid is the user id, which anybody can guess: only the browser holding the
      // session's cookie may end it by front-channel (docs/security.md).
      provider('fc', FC, 'portcullisfc', APP_SECRET, { frontchannel_logout: 'cookie' }),
      provider('fcsid', FCSID, 'portcullisfcsid', APP_SECRET),
      { ...provider('fwd', FWD, 'portcullisfwd', APP_SECRET, { mode: 'forward_single', external_host: fwdUrl() }), internal_host: undefined },
    ],
  };
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) warnings.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  );
  outpost = await Outpost.create(parseConfig(stringify(config), { source: 'llng test config', baseDir: dir }), { logger });
  await outpost.listen();
});

after(async () => {
  await outpost?.close().catch(() => undefined);
  await llng?.close();
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('LemonLDAP::NG, proxy mode', () => {
  const jar = new CookieJar();

  test('login through the LemonLDAP portal (PKCE, the authentik-style callback) lands on the exact URL', async () => {
    const { final, hops } = await loginThrough(url(APP, '/reports?month=11'), DWHO, { jar });
    const authorize = new URL(String(hops[1]!.headers.location));
    assert.equal(authorize.origin, llng.issuer, 'sent to the LemonLDAP portal');
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authorize.searchParams.get('redirect_uri'), callbackOf(url(APP)));
    assert.equal(authorize.searchParams.get('scope'), 'openid profile email', 'only scopes LemonLDAP supports');
    assert.equal(seen(final).url, '/reports?month=11');
  });

  test('every identity header, with the claims LemonLDAP serves only at userinfo', async () => {
    const h = seen(await httpGet(url(APP, '/whoami'), { jar })).headers;
    const u = LLNG_USERS.dwho;
    assert.equal(h['x-authentik-uid'], 'dwho');
    assert.equal(h['x-authentik-username'], u.uid);
    assert.equal(h['x-authentik-email'], u.mail);
    assert.equal(h['x-authentik-name'], u.cn);
    assert.deepEqual(groupsOf(h), [...u.groups].sort());
    assert.equal(h['x-authentik-entitlements'], '');
    assert.equal(h['x-authentik-jwt']!.split('.').length, 3, 'the ID token (LemonLDAP issues opaque access tokens)');
    const idToken = JSON.parse(Buffer.from(h['x-authentik-jwt']!.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(idToken.iss, llng.issuer);
    assert.equal(idToken.name, undefined, 'the ID token itself has no user claims: they came from userinfo');
    assert.equal(h['x-authentik-meta-jwks'], `${llng.issuer}/oauth2/jwks`);
    assert.equal(h['x-authentik-meta-outpost'], 'llng outpost');
    assert.equal(h['x-authentik-meta-provider'], 'app');
    assert.equal(h['x-authentik-meta-app'], 'app');
    assert.equal(h['x-authentik-meta-version'], `portcullis/${VERSION_STRING}`);
  });

  test('access rules see the merged claims; email_verified "true" (a string) counts as verified', async () => {
    assert.equal((await httpGet(url(APP, '/tardis'), { jar })).status, 200);
    assert.equal((await httpGet(url(APP, '/verified'), { jar })).status, 200);
  });

  test('a user in one group: LemonLDAP sends "groups": "users", Portcullis sees the list [users]', async () => {
    const rose = new CookieJar();
    const h = seen((await loginThrough(url(APP, '/'), RTYLER, { jar: rose })).final).headers;
    assert.equal(h['x-authentik-username'], 'rtyler');
    assert.equal(h['x-authentik-groups'], 'users');
    assert.equal((await httpGet(url(APP, '/verified'), { jar: rose })).status, 200, '"users" in claims.groups');
    assert.equal((await httpGet(url(APP, '/tardis'), { jar: rose })).status, 403);
  });

  test('a bearer token: introspected at LemonLDAP (no user claims there), completed from userinfo', async () => {
    // A token for Portcullis's client, from LemonLDAP's password grant (no browser needed).
    const basic = 'Basic ' + Buffer.from(`portcullisapp:${APP_SECRET}`).toString('base64');
    const res = await httpGet(`${llng.issuer}/oauth2/token`, {
      method: 'POST',
      headers: { authorization: basic },
      body: 'grant_type=password&username=rtyler&password=rtyler&scope=openid%20profile%20email',
    });
    assert.equal(res.status, 200, res.body);
    const token = (JSON.parse(res.body) as { access_token: string }).access_token;
    const h = seen(await httpGet(url(APP, '/api'), { headers: { authorization: `Bearer ${token}` } })).headers;
    assert.equal(h['x-authentik-uid'], 'rtyler');
    assert.equal(h['x-authentik-username'], 'rtyler');
    assert.equal(h['x-authentik-email'], LLNG_USERS.rtyler.mail);
    assert.equal(h['x-authentik-name'], LLNG_USERS.rtyler.cn);
    assert.equal(h['x-authentik-groups'], 'users');
    assert.equal(h.authorization, undefined, 'the token is not forwarded');
    const bad = await httpGet(url(APP, '/api'), { headers: { authorization: 'Bearer not-a-token-of-lemonldap' } });
    assert.equal(bad.status, 401);
  });

  test('sign-out ends the Portcullis session and the LemonLDAP session (end_session_endpoint)', async () => {
    const { final, hops } = await submitThrough(url(APP, '/outpost.goauthentik.io/sign_out'), { jar });
    assert.ok(hops.some((h) => h.url.startsWith(`${llng.issuer}/oauth2/logout`)), 'through LemonLDAP\'s end_session_endpoint');
    assert.equal(final.status, 200, `${final.status} ${final.url}`);
    assert.ok(final.url.startsWith(url(APP, '/outpost.goauthentik.io/signed_out')), `back on Portcullis's signed-out page: ${final.url}`);
    const after = await httpGet(url(APP, '/whoami'), { jar });
    assert.equal(after.status, 302, 'no Portcullis session');
    // The portal asks for the password again: the LemonLDAP session is gone too.
    const again = await loginThrough(url(APP, '/whoami'), DWHO, { jar });
    assert.ok(again.hops.some((h) => h.status === 200 && /type="password"/.test(h.body)), 'the login form again');
    assert.equal(seen(again.final).headers['x-authentik-uid'], 'dwho');
  });
});

describe('LemonLDAP::NG, client authentication', () => {
  test('client_secret_post with a client id and secret holding - _ . ~ works', async () => {
    const h = seen((await loginThrough(url(POST, '/'), DWHO, { jar: new CookieJar() })).final).headers;
    assert.equal(h['x-authentik-uid'], 'dwho');
    assert.equal(h['x-authentik-meta-provider'], 'post');
  });

  test('client_secret_basic with such credentials fails (LemonLDAP does not form-decode them): invalid_client, not unreachable', async () => {
    const { final } = await loginThrough(url(BASIC, '/'), DWHO, { jar: new CookieJar() });
    assert.equal(final.status, 502, final.body);
    assert.match(final.body, /oidc\.token_invalid_client/);
    assert.doesNotMatch(final.body, /could not be reached/);
    assert.match(llng.logs(), /No registered Relying Party found with client_id portcullis%2Dbasic%2Eapp/, 'LemonLDAP saw the form-encoded id');
  });
});

describe('LemonLDAP::NG, forward_single behind nginx', () => {
  test('nginx asks Portcullis; after the login the upstream gets the identity headers', async () => {
    const jar = new CookieJar();
    const { final } = await loginThrough(fwdUrl('/reports?month=11'), RTYLER, { jar });
    const s = seen(final);
    assert.equal(s.url, '/reports?month=11');
    assert.equal(s.headers['x-authentik-uid'], 'rtyler');
    assert.equal(s.headers['x-authentik-username'], 'rtyler');
    assert.equal(s.headers['x-authentik-email'], LLNG_USERS.rtyler.mail);
    assert.equal(s.headers['x-authentik-groups'], 'users');
    assert.equal((await httpGet(fwdUrl('/tardis'), { jar })).status, 403, 'the access rule, through nginx');
  });
});

describe('LemonLDAP::NG, front-channel logout', () => {
  test('signing out at the LemonLDAP portal loads our frontchannel_logout_uri (iss, sid) and ends the Portcullis session; a guessed sid without the cookie ends nothing', async () => {
    const jar = new CookieJar();
    const h = seen((await loginThrough(url(FC, '/'), DWHO, { jar })).final).headers;
    const idToken = JSON.parse(Buffer.from(h['x-authentik-jwt']!.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(idToken.sid, 'dwho', 'the sid claim LemonLDAP was told to put in the ID token');
    seen(await httpGet(url(FC, '/still-in'), { jar }));
    // Anybody can send the request LemonLDAP's frame sends — the sid is the user id. Without the
    // session's cookie (another browser, a script) nothing ends.
    const guessed = `${url(FC, '/outpost.goauthentik.io/frontchannel_logout')}?${new URLSearchParams({ iss: llng.issuer, sid: 'dwho' })}`;
    const attacker = await httpGet(guessed);
    assert.equal(attacker.status, 200);
    assert.match(attacker.body, /No session of this application was open here/);
    const otherBrowser = new CookieJar();
    // Another user's session cookie at the same provider (sid rtyler) does not end dwho's either.
    seen((await loginThrough(url(FC, '/'), RTYLER, { jar: otherBrowser })).final);
    const withOtherCookie = await httpGet(guessed, { jar: otherBrowser });
    assert.equal(withOtherCookie.status, 200);
    seen(await httpGet(url(FC, '/still-in'), { jar }));
    // The user signs out at the portal itself; its page frames each relying party's logout URI.
    const { final } = await followRedirects(`${llng.issuer}/?logout=1`, { jar });
    const frames = [...final.body.matchAll(/<iframe src="([^"]+)"/g)].map((m) => decodeEntities(m[1]!));
    const ours = frames.find((f) => f.startsWith(url(FC, '/outpost.goauthentik.io/frontchannel_logout')));
    assert.ok(ours, `LemonLDAP framed our front-channel URI: ${frames.join(', ') || final.body.slice(0, 500)}`);
    const q = new URL(ours).searchParams;
    assert.equal(q.get('iss'), llng.issuer);
    assert.equal(q.get('sid'), 'dwho');
    // The browser loads the frame (with the cookies it has for Portcullis's host).
    const framed = await httpGet(ours, { jar });
    assert.equal(framed.status, 200, framed.body.slice(0, 300));
    assert.equal(framed.headers['cache-control'], 'no-store');
    assert.match(String(framed.headers['content-security-policy']), new RegExp(`frame-ancestors[^;]*${llng.issuer.replace(/[.]/g, '\\.')}`));
    const after = await httpGet(url(FC, '/still-in'), { jar });
    assert.equal(after.status, 302, 'the Portcullis session ended');
  });

  test("a login whose sid is the user's id warns while frontchannel_logout is sid, once per provider; not with cookie", async () => {
    const guessable = (provider: string) => warnings.filter((l) => l.provider === provider && /sid is the user's own id or name/.test(String(l.msg)));
    for (const user of [DWHO, RTYLER]) seen((await loginThrough(url(FCSID, '/'), user, { jar: new CookieJar() })).final);
    assert.equal(guessable('fcsid').length, 1, 'one warning for the provider, not one per login');
    assert.match(String(guessable('fcsid')[0]!.msg), /frontchannel_logout: cookie/);
    assert.equal(guessable('fc').length, 0, 'frontchannel_logout: cookie — nothing to warn about');
  });
});
