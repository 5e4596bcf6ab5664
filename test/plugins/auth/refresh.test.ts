// When a session is refreshed and how long a refreshable one lives: unit tests of the rules in
// src/plugins/auth/refresh.ts (the whole refresh runs against the real IdP in test/e2e/refresh.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRefresh, refreshableLogin } from '../../../src/plugins/auth/refresh.js';
import type { ProviderRuntime } from '../../../src/config/provider.js';
import type { SessionRecord } from '../../../src/sessions/store.js';

const provider = (offline = true) =>
  ({ sessionTtlSeconds: 3600, sessionMaxAgeSeconds: 86400, config: { offline_access: offline } }) as unknown as ProviderRuntime;
const NOW = 1_800_000_000_000;

test('a login with a refresh token lives session_max_age; without one, or with offline_access off, nothing changes', () => {
  // The tokens' end is sessionExpiresAt's (test/e2e/session-lifetime.test.ts covers it).
  const tokens = NOW + 300_000;
  assert.deepEqual(refreshableLogin(provider(), 'rt', tokens, NOW), { refreshToken: 'rt', tokensIssuedAt: NOW, tokensExpireAt: NOW + 300_000, expiresAt: NOW + 86_400_000 });
  assert.deepEqual(refreshableLogin(provider(), undefined, tokens, NOW), {});
  assert.deepEqual(refreshableLogin(provider(false), 'rt', tokens, NOW), {});
});

test('refresh in the last quarter of the tokens\' life, at most the last minute, and after it', () => {
  const r = (issued: number, expire: number, refreshToken: string | null = 'rt') =>
    ({ createdAt: issued, tokensIssuedAt: issued, tokensExpireAt: expire, refreshToken: refreshToken ?? undefined }) as unknown as SessionRecord;
  const short = r(NOW, NOW + 4000);
  assert.equal(needsRefresh(short, NOW + 2999), false);
  assert.equal(needsRefresh(short, NOW + 3000), true);
  assert.equal(needsRefresh(short, NOW + 9000), true);
  const hour = r(NOW, NOW + 3_600_000);
  assert.equal(needsRefresh(hour, NOW + 3_540_000 - 1), false, 'not a quarter of an hour early: one minute');
  assert.equal(needsRefresh(hour, NOW + 3_540_000), true);
  assert.equal(needsRefresh(r(NOW, NOW + 1000, null), NOW + 5000), false, 'no refresh token, no refresh');
});
