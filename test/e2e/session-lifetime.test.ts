// A session never outlives the token it came from: its end is the earliest of
// access_token_validity and the token's own end, and the session cookie's Max-Age follows.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';
import { sessionExpiresAt } from '../../src/sessions/lifetime.js';

const ALICE = { username: 'alice', password: 'alice' };
const stacks: Stack[] = [];
after(async () => {
  for (const s of stacks) await s.close();
});

function sessionMaxAge(hops: HttpResult[]): number {
  for (const h of hops) {
    for (const c of ([] as string[]).concat(h.headers['set-cookie'] ?? [])) {
      const m = /^authentik_proxy_[0-9a-f]{8}=[^;]+;.*Max-Age=(\d+)/.exec(c);
      if (m) return Number(m[1]);
    }
  }
  assert.fail('no session cookie was set');
}

test('a session made from a 6-second token ends with the token: cookie Max-Age and the session itself', async () => {
  const stack = await startStack({ providers: [{ name: 'app', host: 'app.localtest' }], idp: { idTokenTtlSeconds: 6, accessTokenTtlSeconds: 6 } });
  stacks.push(stack);
  const jar = new CookieJar();
  const { final, hops } = await loginThrough(stack.url('app.localtest', '/'), ALICE, { jar });
  assert.equal(final.status, 200);
  const maxAge = sessionMaxAge(hops);
  // A loaded machine may take seconds to log in: the cookie lives at most as long as the token is left.
  assert.ok(maxAge <= 6, `Max-Age ${maxAge} follows the 6-second token, not access_token_validity (3600)`);
  const jwt = JSON.parse(final.body).headers['x-authentik-jwt'] as string;
  const exp = (JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp;

  // The browser would drop the cookie; a client that keeps sending it must not get through either.
  const cookie = jar.header(new URL(stack.url('app.localtest', '/')));
  await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 300));
  const seen = stack.upstream.requests.length;
  const after = await httpGet(stack.url('app.localtest', '/later'), { headers: { cookie } });
  assert.equal(after.status, 302, 'the session ended with its token');
  assert.match(String(after.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/);
  assert.equal(stack.upstream.requests.length, seen, 'no expired X-authentik-jwt reached the upstream');
});

test('access_token_validity under 60 seconds is honoured when it is the shorter', async () => {
  const stack = await startStack({ providers: [{ name: 'app', host: 'app.localtest', extra: { access_token_validity: 2 } }] });
  stacks.push(stack);
  const jar = new CookieJar();
  const { final, hops } = await loginThrough(stack.url('app.localtest', '/'), ALICE, { jar });
  assert.equal(final.status, 200);
  assert.equal(sessionMaxAge(hops), 2);
  const cookie = jar.header(new URL(stack.url('app.localtest', '/')));
  await new Promise((r) => setTimeout(r, 2300));
  assert.equal((await httpGet(stack.url('app.localtest', '/later'), { headers: { cookie } })).status, 302);
});

test('the session end is the earliest of the validity and the tokens', () => {
  const now = 1_000_000_000_000;
  const s = now / 1000;
  assert.equal(sessionExpiresAt(now, 3600, { forwardsIdToken: true }), now + 3_600_000);
  assert.equal(sessionExpiresAt(now, 3600, { forwardsIdToken: true, idTokenExp: s + 3 }), now + 3000);
  assert.equal(sessionExpiresAt(now, 3600, { forwardsIdToken: false, idTokenExp: s + 3, accessTokenExp: s + 600 }), now + 600_000, 'the ID token is not forwarded: its exp does not count');
  assert.equal(sessionExpiresAt(now, 3600, { forwardsIdToken: true, accessTokenExpiresIn: 120, idTokenExp: s + 900 }), now + 120_000);
  assert.equal(sessionExpiresAt(now, 30, { forwardsIdToken: true, idTokenExp: s + 900 }), now + 30_000);
});
