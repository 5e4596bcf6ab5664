// Token-endpoint failures that are not an answer of the provider (src/oidc/token-errors.ts); the
// provider's own refusals are tested against the real IdP in test/e2e/token-errors.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyTokenError } from '../../src/oidc/token-errors.js';

test('no answer at all: unreachable (502); no answer in time: 504; neither names a provider error', async () => {
  const down = await classifyTokenError(new TypeError('fetch failed'));
  assert.equal(down.code, 'oidc.token_unreachable');
  assert.equal(down.status, 502);
  assert.equal(down.providerError, null);
  assert.equal(down.providerStatus, null);
  const slow = await classifyTokenError(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  assert.equal(slow.code, 'oidc.token_timeout');
  assert.equal(slow.status, 504);
});
