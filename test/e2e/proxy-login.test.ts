// Proxy mode end to end: a real OpenID Provider, a real upstream, Portcullis in between.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';

let stack: Stack;
before(async () => {
  stack = await startStack({ providers: [{ name: 'app', host: 'app.localtest', extra: { skip_path_regex: '^/public/\n' } }] });
});
after(async () => stack.close());

test('a first visit is sent to login and lands back on the exact URL, query kept', async () => {
  const jar = new CookieJar();
  const { final, hops } = await loginThrough(stack.url('app.localtest', '/reports?month=11'), { username: 'alice', password: 'alice' }, { jar });
  assert.equal(hops[0]!.status, 302);
  assert.match(String(hops[0]!.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=http%3A%2F%2Fapp\.localtest%3A\d+%2Freports%3Fmonth%3D11$/);
  assert.equal(final.status, 200);
  const seen = JSON.parse(final.body) as { url: string; headers: Record<string, string> };
  assert.equal(seen.url, '/reports?month=11');
  assert.equal(seen.headers['x-authentik-username'], 'alice');
  assert.equal(seen.headers['x-authentik-groups'], 'admins|staff');
});
