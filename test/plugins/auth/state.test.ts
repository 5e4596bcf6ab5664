import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { signState, verifyState } from '../../../src/plugins/auth/state.js';

const key = randomBytes(32);
const now = 1_800_000_000;
const payload = { i: 'flow-1', r: 'https://app.example.com/x?y=1', e: now + 600, p: 'app' };

test('a signed state round-trips for its provider before it expires', () => {
  assert.deepEqual(verifyState(signState(payload, key), key, 'app', now), payload);
});

test('expired, forged, foreign and malformed states are refused', () => {
  const state = signState(payload, key);
  assert.equal(verifyState(state, key, 'app', now + 600), null, 'expired');
  assert.equal(verifyState(state, randomBytes(32), 'app', now), null, 'another key');
  assert.equal(verifyState(state, key, 'other', now), null, 'another provider');
  const [body, mac] = state.split('.');
  const forgedBody = Buffer.from(JSON.stringify({ ...payload, r: 'https://evil.example/' })).toString('base64url');
  assert.equal(verifyState(`${forgedBody}.${mac}`, key, 'app', now), null, 'altered redirect');
  for (const bad of [null, '', 'abc', '.', `${body}.`, `${body}`, 'x'.repeat(5000)]) assert.equal(verifyState(bad, key, 'app', now), null, String(bad).slice(0, 10));
});
