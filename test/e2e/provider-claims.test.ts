// Providers that are not authentik: claims served only at userinfo (oidc-provider's
// conformIdTokenClaims, as LemonLDAP::NG does by default), claims in other shapes (a single-string
// group, a string email_verified, a numeric user name), for logins and for bearer tokens; scope
// mappings and access rules see the merged, normalized claims.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';
import { accessTokenOf } from '../support/tokens.js';
import { defaultSub, type IdpUser } from '../../src/demo/identity-provider.js';

const ALICE = { username: 'alice', password: 'alice' };
const BOB = { username: 'bob', password: 'bob' };
const ROSE = { username: 'rose', password: 'rose' };
const USERS: IdpUser[] = [
  { username: 'alice', password: 'alice', name: 'Alice Liddell', email: 'alice@example.com', groups: ['admins', 'staff'] },
  { username: 'bob', password: 'bob', name: 'Bob Builder', email: 'bob@example.com', groups: ['staff'] },
  // Each claim in a shape authentik never sends.
  { username: 'rose', password: 'rose', claims: { preferred_username: 4711, name: 12345, groups: 'users', entitlements: 'reports:read', email_verified: 'true' } },
];
const RULES = {
  mappings: [{ name: 'primary group', expression: '{"ak_proxy": {"user_attributes": {"additionalHeaders": {"X-Primary-Group": claims.groups[0]}}}}' }],
  access_rules: [
    { name: 'admins only', paths: ['^/admin(/|$)'], when: '"admins" in claims.groups' },
    { name: 'verified users', paths: ['^/verified(/|$)'], when: '"users" in claims.groups && claims.email_verified == true && claims.preferred_username == "4711"' },
  ],
};

function seen(res: HttpResult): { url: string; headers: Record<string, string> } {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 300)}`);
  return JSON.parse(res.body) as { url: string; headers: Record<string, string> };
}
const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

describe('claims served only at userinfo', () => {
  let stack: Stack;
  const AUTO = 'auto.localtest';
  const NEVER = 'never.localtest';
  before(async () => {
    stack = await startStack({
      claimsAtUserinfoOnly: true,
      users: USERS,
      providers: [
        { name: 'auto', host: AUTO, extra: RULES },
        { name: 'never', host: NEVER, extra: { access_rules: RULES.access_rules, fetch_userinfo: 'never' } },
      ],
    });
  });
  after(async () => stack?.close());

  test('login: the upstream gets the claims from userinfo; mappings and access rules see them', async () => {
    const jar = new CookieJar();
    const before = stack.idp.userinfoRequests;
    const s = seen((await loginThrough(stack.url(AUTO, '/'), ALICE, { jar })).final);
    assert.equal(stack.idp.userinfoRequests, before + 1, 'userinfo asked once, at login');
    assert.equal(s.headers['x-authentik-uid'], defaultSub('alice'));
    assert.equal(s.headers['x-authentik-username'], 'alice');
    assert.equal(s.headers['x-authentik-email'], 'alice@example.com');
    assert.equal(s.headers['x-authentik-name'], 'Alice Liddell');
    assert.equal(s.headers['x-authentik-groups'], 'admins|staff');
    assert.equal(s.headers['x-primary-group'], 'admins', 'the scope mapping saw the groups from userinfo');
    assert.equal((await httpGet(stack.url(AUTO, '/admin'), { jar })).status, 200, 'the access rule saw the groups from userinfo');
    assert.equal(stack.idp.userinfoRequests, before + 1, 'never per request');

    const bobJar = new CookieJar();
    seen((await loginThrough(stack.url(AUTO, '/'), BOB, { jar: bobJar })).final);
    assert.equal((await httpGet(stack.url(AUTO, '/admin'), { jar: bobJar })).status, 403);
  });

  test('userinfo: never: only the ID token counts (the claims at userinfo are not seen)', async () => {
    const jar = new CookieJar();
    const before = stack.idp.userinfoRequests;
    const s = seen((await loginThrough(stack.url(NEVER, '/'), ALICE, { jar })).final);
    assert.equal(stack.idp.userinfoRequests, before, 'no userinfo request');
    assert.equal(s.headers['x-authentik-uid'], defaultSub('alice'));
    assert.equal(s.headers['x-authentik-username'], '');
    assert.equal(s.headers['x-authentik-groups'], '');
    assert.equal((await httpGet(stack.url(NEVER, '/admin'), { jar })).status, 403);
  });

  test('a bearer token whose introspection answer has no user claims: userinfo fills them in, cached with the introspection', async () => {
    const token = await accessTokenOf(stack, 'auto', ALICE, 'openid profile email');
    const before = { userinfo: stack.idp.userinfoRequests, introspections: stack.idp.introspections };
    const s = seen(await httpGet(stack.url(AUTO, '/api'), bearer(token)));
    assert.equal(s.headers['x-authentik-uid'], defaultSub('alice'));
    assert.equal(s.headers['x-authentik-username'], 'alice');
    assert.equal(s.headers['x-authentik-email'], 'alice@example.com');
    assert.equal(s.headers['x-authentik-groups'], 'admins|staff');
    assert.equal(s.headers['x-primary-group'], undefined, 'scope mappings run at login only, not for bearer tokens');
    assert.equal((await httpGet(stack.url(AUTO, '/admin'), bearer(token))).status, 200, 'the access rule saw the groups from userinfo');
    assert.equal(stack.idp.introspections, before.introspections + 1);
    assert.equal(stack.idp.userinfoRequests, before.userinfo + 1, 'the second request was answered from the cache');
  });
});

describe('claim shapes other than authentik\'s', () => {
  let stack: Stack;
  const APP = 'app.localtest';
  before(async () => {
    stack = await startStack({ users: USERS, providers: [{ name: 'app', host: APP, extra: RULES }] });
  });
  after(async () => stack?.close());

  test('login: a single-string group and entitlement, a string email_verified and numeric names are normalized once', async () => {
    const jar = new CookieJar();
    const s = seen((await loginThrough(stack.url(APP, '/'), ROSE, { jar })).final);
    assert.equal(s.headers['x-authentik-groups'], 'users');
    assert.equal(s.headers['x-authentik-entitlements'], 'reports:read');
    assert.equal(s.headers['x-authentik-username'], '4711');
    assert.equal(s.headers['x-authentik-name'], '12345');
    assert.equal(s.headers['x-primary-group'], 'users', 'the scope mapping indexes the group list');
    assert.equal((await httpGet(stack.url(APP, '/verified'), { jar })).status, 200, 'the access rule sees a list, a boolean and a string');
    assert.equal((await httpGet(stack.url(APP, '/admin'), { jar })).status, 403);
  });

  test('a bearer token: the introspection answer is normalized the same way', async () => {
    const token = await accessTokenOf(stack, 'app', ROSE);
    const s = seen(await httpGet(stack.url(APP, '/api'), bearer(token)));
    assert.equal(s.headers['x-authentik-groups'], 'users');
    assert.equal(s.headers['x-authentik-entitlements'], 'reports:read');
    assert.equal(s.headers['x-authentik-username'], '4711');
    assert.equal((await httpGet(stack.url(APP, '/verified'), bearer(token))).status, 200);
  });
});
