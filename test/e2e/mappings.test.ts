// Scope mappings and access rules end to end: evaluated at login against the real IdP's claims,
// then honoured on every request without evaluating anything again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';
import { startUpstream, type RunningUpstream } from '../support/upstream.js';

let stack: Stack;
let aliceBackend: RunningUpstream;
let idpBackend: RunningUpstream;

before(async () => {
  aliceBackend = await startUpstream({ name: 'alice-backend' });
  idpBackend = await startUpstream({ name: 'idp-chosen-backend' });
  const alicePort = new URL(aliceBackend.url).port;
  stack = await startStack({
    providers: [
      {
        name: 'mapped',
        host: 'mapped.localtest',
        extra: {
          mappings: [
            {
              name: 'per-user backend',
              expression: `claims.preferred_username == "alice" ? {"ak_proxy": {"backend_override": "http://127.0.0.1:${alicePort}"}} : {}`,
            },
            {
              name: 'team header',
              expression: '{"ak_proxy": {"user_attributes": {"additionalHeaders": {"X-Primary-Group": claims.groups[0], "X-Is-Admin": "admins" in claims.groups}}}}',
            },
          ],
          access_rules: [{ name: 'admins only', paths: ['^/admin(/|$)'], when: '"admins" in claims.groups' }],
        },
      },
      { name: 'idp-override', host: 'idp.localtest' },
      {
        name: 'fwd',
        host: 'fwd.localtest',
        mode: 'forward_single',
        extra: { access_rules: [{ name: 'admins only', paths: ['^/admin(/|$)'], when: '"admins" in claims.groups' }] },
      },
      {
        name: 'host-header',
        host: 'hh.localtest',
        extra: { mappings: [{ name: 'virtual host', expression: '{"ak_proxy": {"host_header": "internal-" + claims.preferred_username + ".example"}}' }] },
      },
      {
        name: 'broken',
        host: 'broken.localtest',
        extra: { mappings: [{ name: 'needs a claim', expression: '{"x": claims.department + "!"}' }] },
      },
    ],
    users: [
      { username: 'alice', password: 'alice', groups: ['admins', 'staff'], email: 'alice@example.com' },
      { username: 'bob', password: 'bob', groups: ['staff'], email: 'bob@example.com' },
      { username: 'dave', password: 'dave', groups: ['staff'], ak_proxy: { backend_override: idpBackend.url, user_attributes: { additionalHeaders: { 'X-From-Idp': 'yes' } } } },
    ],
  });
});
after(async () => {
  await stack.close();
  await aliceBackend.close();
  await idpBackend.close();
});

async function login(host: string, user: string): Promise<{ jar: CookieJar; body: { name: string; headers: Record<string, string> }; status: number }> {
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(host, '/'), { username: user, password: user }, { jar });
  return { jar, status: final.status, body: final.status === 200 ? JSON.parse(final.body) : { name: '', headers: {} } };
}

test('a mapping sends one user to their own backend and another to the default', async () => {
  const alice = await login('mapped.localtest', 'alice');
  assert.equal(alice.body.name, 'alice-backend');
  const again = JSON.parse((await httpGet(stack.url('mapped.localtest', '/reports?x=1'), { jar: alice.jar })).body);
  assert.equal(again.name, 'alice-backend');
  assert.equal(again.url, '/reports?x=1', 'the path comes from the request');
  assert.equal(again.headers.host, new URL(aliceBackend.url).host);
  const bob = await login('mapped.localtest', 'bob');
  assert.equal(bob.body.name, 'upstream');
});

test('a mapping adds headers from group membership', async () => {
  const alice = await login('mapped.localtest', 'alice');
  assert.equal(alice.body.headers['x-primary-group'], 'admins');
  assert.equal(alice.body.headers['x-is-admin'], 'true');
  const bob = await login('mapped.localtest', 'bob');
  assert.equal(bob.body.headers['x-is-admin'], 'false');
});

test("the IdP's own ak_proxy claim is honoured", async () => {
  const dave = await login('idp.localtest', 'dave');
  assert.equal(dave.body.name, 'idp-chosen-backend');
  assert.equal(dave.body.headers['x-from-idp'], 'yes');
});

test('a failing mapping fails the login cleanly: error page, no session, nothing proxied', async () => {
  const before = stack.upstream.requests.length;
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url('broken.localtest', '/'), { username: 'bob', password: 'bob' }, { jar });
  assert.equal(final.status, 500);
  assert.match(final.body, /needs a claim/);
  assert.equal(stack.upstream.requests.length, before);
  const next = await httpGet(stack.url('broken.localtest', '/'), { jar });
  assert.equal(next.status, 302, 'no session was created');
});

test('an access rule lets admins into /admin and gives others 403', async () => {
  const alice = await login('mapped.localtest', 'alice');
  assert.equal((await httpGet(stack.url('mapped.localtest', '/admin/users'), { jar: alice.jar })).status, 200);
  const bob = await login('mapped.localtest', 'bob');
  const denied = await httpGet(stack.url('mapped.localtest', '/admin/users'), { jar: bob.jar });
  assert.equal(denied.status, 403);
  assert.match(denied.body, /admins only/);
  assert.equal((await httpGet(stack.url('mapped.localtest', '/admin/../reports'), { jar: bob.jar })).status, 200, 'normalized before the rule');
  assert.equal((await httpGet(stack.url('mapped.localtest', '/administrators'), { jar: bob.jar })).status, 200);
  assert.equal((await httpGet(stack.url('mapped.localtest', '//admin'), { jar: bob.jar })).status, 403);
});

test('access rules apply in forward auth too: 403 to the reverse proxy for a non-admin', async () => {
  const nginxCheck = async (jar: CookieJar, path: string) => {
    const name = stack.outpost.providers.byName('fwd')!.cookieName;
    return httpGet(`http://127.0.0.1:${stack.port}/outpost.goauthentik.io/auth/nginx`, {
      headers: { host: `fwd.localtest:${stack.port}`, 'x-original-url': `http://fwd.localtest:${stack.port}${path}`, cookie: `${name}=${jar.get(name, 'fwd.localtest')}` },
    });
  };
  const sessionFor = async (user: string) => {
    const jar = new CookieJar();
    await loginThrough(stack.url('fwd.localtest', '/outpost.goauthentik.io/start?rd=/'), { username: user, password: user }, { jar });
    return jar;
  };
  const alice = await sessionFor('alice');
  const bob = await sessionFor('bob');
  const ok = await nginxCheck(alice, '/admin/users');
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['x-authentik-username'], 'alice');
  const denied = await nginxCheck(bob, '/admin/users');
  assert.equal(denied.status, 403);
  assert.equal(denied.headers['x-authentik-username'], undefined);
  assert.equal((await nginxCheck(bob, '/reports')).status, 200);
});

test('ak_proxy.host_header from a mapping sets the Host sent upstream', async () => {
  const alice = await login('hh.localtest', 'alice');
  assert.equal(alice.body.headers.host, 'internal-alice.example');
  assert.equal(alice.body.headers['x-forwarded-host'], `hh.localtest:${stack.port}`);
});
