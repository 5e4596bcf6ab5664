import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileAccessRules, MappingCompileError } from '../../src/mappings/index.js';

const admin = { sub: '1', groups: ['admins', 'staff'], email_verified: true };
const user = { sub: '2', groups: ['staff'], email_verified: true };

test('no rules: everything allowed', () => {
  const rules = compileAccessRules([]);
  assert.equal(rules.count, 0);
  assert.deepEqual(rules.check('/x', {}), { allowed: true });
});

test('admins-only rule on a path prefix', () => {
  const rules = compileAccessRules([{ name: 'admins only', paths: ['^/admin(/|$)'], when: '"admins" in claims.groups' }]);
  assert.equal(rules.count, 1);
  assert.deepEqual(rules.check('/admin', admin), { allowed: true });
  assert.deepEqual(rules.check('/admin/users', admin), { allowed: true });
  assert.deepEqual(rules.check('/admin/users', user), { allowed: false, rule: 'admins only' });
  assert.deepEqual(rules.check('/administrator', user), { allowed: true });
  assert.deepEqual(rules.check('/', user), { allowed: true });
});

test('paths are unanchored searches; any pattern matching applies the rule', () => {
  const rules = compileAccessRules([{ name: 'secret', paths: ['/secret', '\\.bak$'], when: 'false' }]);
  assert.deepEqual(rules.check('/a/secret/b', admin), { allowed: false, rule: 'secret' });
  assert.deepEqual(rules.check('/db.bak', admin), { allowed: false, rule: 'secret' });
  assert.deepEqual(rules.check('/public', admin), { allowed: true });
});

test('every applicable rule must pass; rules without paths apply everywhere', () => {
  const rules = compileAccessRules([
    { name: 'verified', when: 'claims.email_verified == true' },
    { paths: ['^/admin'], when: '"admins" in claims.groups' },
  ]);
  assert.deepEqual(rules.check('/admin', admin), { allowed: true });
  assert.deepEqual(rules.check('/admin', user), { allowed: false, rule: 'access_rules[1]' });
  assert.deepEqual(rules.check('/', { ...admin, email_verified: false }), { allowed: false, rule: 'verified' });
});

test('evaluation errors deny (fail closed)', () => {
  const rules = compileAccessRules([{ name: 'dept', when: 'claims.department == "eng"' }]);
  assert.deepEqual(rules.check('/', { department: 'eng' }), { allowed: true });
  assert.deepEqual(rules.check('/', {}), { allowed: false, rule: 'dept' }); // missing claim
  assert.deepEqual(rules.check('/', { department: 5 }), { allowed: false, rule: 'dept' }); // wrong type compares false
  const typed = compileAccessRules([{ name: 'groups', when: '"admins" in claims.groups' }]);
  assert.deepEqual(typed.check('/', { groups: 'admins' }), { allowed: false, rule: 'groups' }); // `in` needs a list or map
  assert.deepEqual(typed.check('/', { groups: 7 }), { allowed: false, rule: 'groups' });
  // A dyn result that is not a bool also denies.
  const dyn = compileAccessRules([{ name: 'flag', when: 'claims.flag' }]);
  assert.deepEqual(dyn.check('/', { flag: true }), { allowed: true });
  assert.deepEqual(dyn.check('/', { flag: 'yes' }), { allowed: false, rule: 'flag' });
});

test('the claims object is not retained between checks', () => {
  const rules = compileAccessRules([{ name: 'a', when: 'claims.ok' }]);
  assert.deepEqual(rules.check('/', { ok: true }), { allowed: true });
  assert.deepEqual(rules.check('/', { ok: false }), { allowed: false, rule: 'a' });
  assert.deepEqual(rules.check('/', { ok: true }), { allowed: true });
});

test('compile errors: syntax with position, non-bool result, bad path regex, no request variable', () => {
  assert.throws(
    () => compileAccessRules([{ name: 'r', when: '"admins" in' }]),
    (err: unknown) => err instanceof MappingCompileError && err.mapping === 'r' && err.position?.line === 1,
  );
  assert.throws(() => compileAccessRules([{ name: 'r', when: '"admins"' }]), (err: unknown) => err instanceof MappingCompileError && /must return a bool/.test(err.detail));
  assert.throws(() => compileAccessRules([{ when: 'true', paths: ['(a)\\1'] }]), (err: unknown) => err instanceof MappingCompileError && err.mapping === 'access_rules[0]' && /paths\[0\]/.test(err.detail));
  assert.throws(() => compileAccessRules([{ name: 'r', when: 'request.path == "/"' }]), MappingCompileError);
});
