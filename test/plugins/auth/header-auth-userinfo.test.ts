// Header authentication with userinfo: an introspection answer without the user's claims is
// completed from userinfo (with a fake introspector and userinfo fetcher); the result, merged
// claims included, is cached as one; failures of userinfo are told apart.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { HeaderAuthenticator, type HeaderAuthResult, type IntrospectionAnswer, type UserinfoFetcher } from '../../../src/plugins/auth/header-auth.js';
import { OidcError } from '../../../src/oidc/errors.js';
import type { ProviderRuntime } from '../../../src/config/provider.js';
import type { Logger } from '../../../src/pipeline/logger.js';
import { createHarness, type Harness } from '../support.js';

const silent = pino({ level: 'silent' }) as unknown as Logger;
const ISSUER = 'https://idp.example/application/o/app/';
const T0 = 1_700_000_000_000;

let h: Harness;
let app: ProviderRuntime;
before(async () => {
  h = await createHarness({ discover: false });
  app = h.provider('app');
});
after(() => h.close());

/** What LemonLDAP::NG's introspection answers: no user claims. */
const bare = (): IntrospectionAnswer => ({ active: true, client_id: 'client-app', sub: 'rose', exp: Math.floor(T0 / 1000) + 3600, iss: ISSUER, scope: 'openid profile email' });

function authenticator(userinfo: UserinfoFetcher, answer: IntrospectionAnswer = bare()) {
  const calls = { introspect: 0, userinfo: 0 };
  const auth = new HeaderAuthenticator(silent, {
    now: () => T0,
    introspect: async () => (calls.introspect++, { issuer: ISSUER, answer }),
    userinfo: async (p, token, sub) => (calls.userinfo++, userinfo(p, token, sub)),
  });
  return { auth, calls };
}

async function run(auth: HeaderAuthenticator): Promise<HeaderAuthResult> {
  return auth.authenticate(app, 'token-1');
}

test('claims from userinfo are merged (and normalized) and cached with the introspection result', async () => {
  let asked: { token: string; sub: string } | undefined;
  const { auth, calls } = authenticator(async (_p, token, sub) => ((asked = { token, sub }), { sub, preferred_username: 'rtyler', groups: 'users', client_id: 'evil', exp: 1 }));
  const r = await run(auth);
  assert.equal(r.kind, 'accepted');
  const claims = (r as Extract<HeaderAuthResult, { kind: 'accepted' }>).session.claims;
  assert.equal(claims.preferred_username, 'rtyler');
  assert.deepEqual(claims.groups, ['users']);
  assert.equal(claims.client_id, 'client-app', 'protocol claims stay the introspection answer\'s');
  assert.equal((r as Extract<HeaderAuthResult, { kind: 'accepted' }>).session.expiresAt, (Math.floor(T0 / 1000) + 3600) * 1000);
  assert.deepEqual(asked, { token: 'token-1', sub: 'rose' }, 'asked with the token itself, for the introspected subject');
  const again = auth.authenticate(app, 'token-1');
  assert.ok(!(again instanceof Promise), 'answered from the cache');
  assert.deepEqual(calls, { introspect: 1, userinfo: 1 });
});

test('an answer that already carries the user claims asks no userinfo (auto)', async () => {
  const { auth, calls } = authenticator(async () => assert.fail('no userinfo'), { ...bare(), preferred_username: 'rose', email: 'r@x', name: 'Rose', groups: [] });
  assert.equal((await run(auth)).kind, 'accepted');
  assert.equal(calls.userinfo, 0);
});

test('userinfo unreachable: unavailable (503), not accepted without claims', async () => {
  const { auth } = authenticator(async () => {
    throw new OidcError('oidc.userinfo_unreachable', 'down', 503);
  });
  assert.equal((await run(auth)).kind, 'unavailable');
});

test('userinfo about another subject: refused', async () => {
  const { auth } = authenticator(async () => {
    throw new OidcError('oidc.userinfo_subject_mismatch', 'other sub', 502);
  });
  const r = await run(auth);
  assert.equal(r.kind, 'refused');
});

test('userinfo refuses the token (e.g. no openid scope) or there is no endpoint: accepted with the introspection claims', async () => {
  const refusing = authenticator(async () => {
    throw new OidcError('oidc.userinfo_refused', 'HTTP 401', 502);
  });
  const r = await run(refusing.auth);
  assert.equal(r.kind, 'accepted');
  assert.equal((r as Extract<HeaderAuthResult, { kind: 'accepted' }>).session.claims.preferred_username, undefined);
  const none = authenticator(async () => null);
  assert.equal((await run(none.auth)).kind, 'accepted');
});
