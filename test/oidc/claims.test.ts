// Claim shapes: one normalization for every provider (src/oidc/claims.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeClaims } from '../../src/oidc/claims.js';

test('groups and entitlements: a single string is a one-element list, numbers become strings, junk entries go', () => {
  assert.deepEqual(normalizeClaims({ sub: 's', groups: 'users' }).groups, ['users']);
  assert.deepEqual(normalizeClaims({ sub: 's', entitlements: 'reports:read' }).entitlements, ['reports:read']);
  assert.deepEqual(normalizeClaims({ sub: 's', groups: ['a', 42, null, { x: 1 }, '', 'b'] }).groups, ['a', '42', 'b']);
  assert.deepEqual(normalizeClaims({ sub: 's', groups: 7 }).groups, ['7']);
  assert.deepEqual(normalizeClaims({ sub: 's', groups: '' }).groups, []);
  assert.equal('groups' in normalizeClaims({ sub: 's', groups: { admins: true } }), false);
  assert.equal('groups' in normalizeClaims({ sub: 's', groups: null }), false);
  assert.equal('groups' in normalizeClaims({ sub: 's' }), false, 'an absent claim stays absent');
});

test('email_verified: booleans, "true"/"false" in any case, 1/0 and "1"/"0"; anything else is removed', () => {
  const ev = (v: unknown) => normalizeClaims({ sub: 's', email_verified: v }).email_verified;
  assert.equal(ev(true), true);
  assert.equal(ev(false), false);
  assert.equal(ev('true'), true);
  assert.equal(ev('TRUE'), true);
  assert.equal(ev('false'), false);
  assert.equal(ev('1'), true);
  assert.equal(ev(0), false);
  assert.equal(ev(1), true);
  assert.equal(ev('yes'), undefined);
  assert.equal('email_verified' in normalizeClaims({ sub: 's', email_verified: 'maybe' }), false);
});

test('string claims: numbers become their decimal string, other non-strings are removed; sub and unknown claims untouched', () => {
  const c = normalizeClaims({ sub: 's', preferred_username: 4711, name: 12.5, email: ['a@b'], nickname: true, given_name: 'Rose', department: 7, ak_proxy: { x: 1 } });
  assert.equal(c.preferred_username, '4711');
  assert.equal(c.name, '12.5');
  assert.equal('email' in c, false);
  assert.equal('nickname' in c, false);
  assert.equal(c.given_name, 'Rose');
  assert.equal(c.department, 7, 'claims Portcullis does not know pass unchanged');
  assert.deepEqual(c.ak_proxy, { x: 1 });
  assert.equal(normalizeClaims({ sub: 's', name: Number.NaN }).name, undefined);
});

test('the input is not changed', () => {
  const input = { sub: 's', groups: 'users' };
  normalizeClaims(input);
  assert.equal(input.groups, 'users');
});
