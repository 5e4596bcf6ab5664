// A session store outage (a real Redis, stopped): allowlisted paths are still served, anonymously,
// even to a browser that sends its session cookie; protected paths, sign-out and the login
// callback answer 503 with a clear page — never the upstream, never a login loop, never a 500.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../support/stack.js';
import { startRedis, type RunningRedis } from '../support/redis.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';

const APP = 'app.localtest';
const ALICE = { username: 'alice', password: 'alice' };
let redis: RunningRedis;
let stack: Stack;

before(async () => {
  redis = await startRedis();
  stack = await startStack({
    providers: [{ name: 'app', host: APP, extra: { skip_path_regex: '^/public/' } }],
    outpost: { session_store: { type: 'redis', url: redis.url, key_prefix: 'outage:' } },
  });
});
after(async () => {
  await stack?.close();
  await redis?.stop();
});

test('Redis down: allowlisted paths served anonymously with a session cookie, protected paths 503', async () => {
  const jar = new CookieJar();
  await loginThrough(stack.url(APP, '/'), ALICE, { jar });
  const signedIn = await httpGet(stack.url(APP, '/public/page'), { jar });
  assert.equal(JSON.parse(signedIn.body).headers['x-authentik-username'], 'alice');
  await redis.stop();

  const seen = stack.upstream.requests.length;
  const publicPage = await httpGet(stack.url(APP, '/public/page'), { jar, headers: { 'x-authentik-username': 'mallory' } });
  assert.equal(publicPage.status, 200, publicPage.body.slice(0, 300));
  const upstreamSaw = JSON.parse(publicPage.body) as { headers: Record<string, string> };
  assert.equal(upstreamSaw.headers['x-authentik-username'], undefined, 'anonymous: no identity, and no forged one');
  assert.equal(stack.upstream.requests.length, seen + 1);
  assert.doesNotMatch(String(publicPage.headers['set-cookie'] ?? ''), /authentik_proxy_[0-9a-f]{8}=;/, 'the session cookie is kept');

  const page = await httpGet(stack.url(APP, '/private'), { jar });
  assert.equal(page.status, 503);
  assert.match(page.body, /cannot reach its session store/);
  assert.match(page.body, /sessions\.unavailable/);
  assert.match(page.body, /request id <code>[0-9a-f-]{36}<\/code>/);
  assert.equal(page.headers['retry-after'], '5');
  const api = await httpGet(stack.url(APP, '/api/x'), { jar, headers: { accept: 'application/json' } });
  assert.equal(api.status, 503);
  assert.equal(JSON.parse(api.body).error, 'sessions.unavailable');
  const signOut = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'), { jar });
  assert.equal(signOut.status, 503);
  assert.match(signOut.body, /could not be ended/);
  assert.equal(stack.upstream.requests.length, seen + 1, 'no protected request reached the upstream');

  // Without a session cookie nothing asks the store: the usual login redirect.
  const anonymous = await httpGet(stack.url(APP, '/private'));
  assert.equal(anonymous.status, 302);
});
