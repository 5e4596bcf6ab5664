// Key rotation at the real IdP (oidc-provider): a login right after the IdP starts signing with
// a new key works at once (the signing keys are fetched again), and existing sessions go on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';

const APP = 'app.localtest';
let stack: Stack;

before(async () => {
  stack = await startStack({ providers: [{ name: 'app', host: APP }] });
});
after(async () => stack?.close());

function upstreamUser(res: HttpResult): string | undefined {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 300)}`);
  return (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-authentik-username'];
}

test('a login right after a key rotation succeeds, and so does one after a second rotation within the refetch floor', async () => {
  const alice = new CookieJar();
  assert.equal(upstreamUser((await loginThrough(stack.url(APP, '/first'), { username: 'alice', password: 'alice' }, { jar: alice })).final), 'alice');
  const fetchesAfterFirstLogin = stack.idp.jwksFetches;
  assert.ok(fetchesAfterFirstLogin >= 1, 'the first login fetched the signing keys');

  // Rotated a moment after Portcullis fetched the keys: jose's remote key set would refuse to
  // look again for 30 s, and this login would fail with "ID token failed verification".
  await stack.idp.rotateKeys();
  const bob = new CookieJar();
  const started = Date.now();
  assert.equal(upstreamUser((await loginThrough(stack.url(APP, '/second'), { username: 'bob', password: 'bob' }, { jar: bob })).final), 'bob');
  assert.equal(stack.idp.jwksFetches, fetchesAfterFirstLogin + 1, 'exactly one refetch for the new key id');

  // Again, immediately: the refetch waits for the floor (1 s) instead of failing.
  await stack.idp.rotateKeys();
  const carol = new CookieJar();
  assert.equal(upstreamUser((await loginThrough(stack.url(APP, '/third'), { username: 'alice', password: 'alice' }, { jar: carol })).final), 'alice');
  assert.equal(stack.idp.jwksFetches, fetchesAfterFirstLogin + 2);
  assert.ok(Date.now() - started < 10_000, 'no cool-down lockout');

  // Sessions from before the rotations are untouched.
  assert.equal(upstreamUser(await httpGet(stack.url(APP, '/again'), { jar: alice })), 'alice');
  assert.equal(upstreamUser(await httpGet(stack.url(APP, '/again'), { jar: bob })), 'bob');
  assert.equal(stack.idp.jwksFetches, fetchesAfterFirstLogin + 2, 'sessions need no keys');
});
