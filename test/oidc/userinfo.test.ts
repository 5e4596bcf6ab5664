// When userinfo is asked and how its answer is merged (src/oidc/userinfo.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchUserinfo, mergeUserinfo, wantsUserinfo } from '../../src/oidc/userinfo.js';
import type { OidcError } from '../../src/oidc/errors.js';

const full = { sub: 's', preferred_username: 'u', email: 'e@x', name: 'N', groups: [] };

test('auto: only when a claim Portcullis uses is missing (username counts for preferred_username)', () => {
  assert.equal(wantsUserinfo('auto', full), false);
  assert.equal(wantsUserinfo('auto', { sub: 's' }), true);
  for (const missing of ['preferred_username', 'email', 'name', 'groups'] as const) {
    const { [missing]: _gone, ...rest } = full;
    assert.equal(wantsUserinfo('auto', rest), true, `${missing} missing`);
  }
  const { preferred_username: _p, ...introspected } = full;
  assert.equal(wantsUserinfo('auto', { ...introspected, username: 'u' }), false);
});

test('always and never', () => {
  assert.equal(wantsUserinfo('always', full), true);
  assert.equal(wantsUserinfo('never', { sub: 's' }), false);
});

test('merge: user claims from userinfo (replacing), protocol claims never', () => {
  const idToken = { sub: 's', iss: 'https://idp', aud: 'c', exp: 10, nonce: 'n', name: 'Old', sid: 'x' };
  const merged = mergeUserinfo(idToken, { sub: 'other', iss: 'https://evil', aud: 'evil', exp: 99, nonce: 'm', sid: 'y', name: 'New', groups: 'users', email: 'e@x' });
  assert.deepEqual(merged, { sub: 's', iss: 'https://idp', aud: 'c', exp: 10, nonce: 'n', sid: 'x', name: 'New', groups: 'users', email: 'e@x' });
  const answer = { active: true, sub: 's', client_id: 'c', scope: 'openid', token_type: 'Bearer', exp: 10 };
  assert.deepEqual(mergeUserinfo(answer, { client_id: 'evil', scope: 'admin', token_type: 'x', active: false, preferred_username: 'u' }), { ...answer, preferred_username: 'u' });
});

/** A userinfo endpoint on loopback answering `body` with `status` (and the Authorization it saw). */
async function endpoint(status: number, body: unknown, headers: Record<string, string> = {}) {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(String(req.headers.authorization));
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const req = { as: { issuer: `http://127.0.0.1:${port}`, userinfo_endpoint: `http://127.0.0.1:${port}/userinfo` }, clientId: 'c', allowHttp: true, timeoutMs: 2000 };
  return { req, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const codeOf = async (p: Promise<unknown>) => p.then(() => 'no error', (e: OidcError) => e.code);

test('fetchUserinfo: the answer when sub matches (asked with the bearer token)', async () => {
  const e = await endpoint(200, { sub: 's', groups: 'users' });
  try {
    assert.deepEqual(await fetchUserinfo(e.req, 'tok', 's'), { sub: 's', groups: 'users' });
    assert.deepEqual(e.seen, ['Bearer tok']);
  } finally {
    await e.close();
  }
});

test('fetchUserinfo: another sub, a refusal, garbage and no server each have their code', async () => {
  const other = await endpoint(200, { sub: 'someone-else', name: 'X' });
  const refused = await endpoint(401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
  const garbage = await endpoint(200, { name: 'no sub' });
  try {
    assert.equal(await codeOf(fetchUserinfo(other.req, 't', 's')), 'oidc.userinfo_subject_mismatch');
    assert.equal(await codeOf(fetchUserinfo(refused.req, 't', 's')), 'oidc.userinfo_refused');
    assert.equal(await codeOf(fetchUserinfo(garbage.req, 't', 's')), 'oidc.userinfo_invalid');
  } finally {
    await Promise.all([other.close(), refused.close(), garbage.close()]);
  }
  const gone = await endpoint(200, {});
  await gone.close();
  assert.equal(await codeOf(fetchUserinfo(gone.req, 't', 's')), 'oidc.userinfo_unreachable');
});
