import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compileAccessRules,
  compileMappings,
  deepMerge,
  MappingCompileError,
  MappingEvaluationError,
  MAX_RESULT_JSON_LENGTH,
  type MappingInput,
} from '../../src/mappings/index.js';

const input = (claims: Record<string, unknown>): MappingInput => ({
  claims,
  request: { host: 'app.example.com', path: '/dashboard', headers: { 'user-agent': 'test' } },
  provider: { name: 'demo', slug: 'demo-app' },
});

const compileError = (expression: string): MappingCompileError => {
  try {
    compileMappings([{ name: 'broken', expression }]);
  } catch (err) {
    assert.ok(err instanceof MappingCompileError, `expected MappingCompileError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a compile error');
};

test('syntax error reports mapping name and line/column', () => {
  const err = compileError('{"a": 1 +}');
  assert.equal(err.mapping, 'broken');
  assert.deepEqual(err.position, { line: 1, column: 10 });
  assert.match(err.message, /mapping 'broken', line 1 column 10: /);
  assert.ok(err.detail.length > 0);
  assert.ok(!err.detail.includes('\n'));
});

test('error position counts lines in multi-line expressions', () => {
  const err = compileError('{\n  "a": nope.field\n}');
  assert.deepEqual(err.position, { line: 2, column: 8 });
  assert.match(err.detail, /nope/);
});

test('type errors are found at compile time', () => {
  const err = compileError('{"a": 1 + "x"}');
  assert.equal(err.position?.line, 1);
  assert.match(err.detail, /overload/);
});

test('a statically non-map result is a compile error', () => {
  const err = compileError('"just a string"');
  assert.match(err.detail, /must return a map/);
});

test('expression size and comprehension nesting are bounded at compile', () => {
  assert.match(compileError(`{"a": "${'x'.repeat(5000)}"}`).detail, /limit is 4096/);
  const nested = compileError('{"a": claims.groups.map(a, claims.groups.map(b, claims.groups.map(c, c)))}');
  assert.match(nested.detail, /nested at most 2/);
  assert.ok(nested.position);
});

test('matches() needs an RE2-compatible literal pattern', () => {
  assert.match(compileError('{"a": claims.email.matches(claims.pattern)}').detail, /string literal/);
  assert.match(compileError('{"a": claims.email.matches("(a)\\\\1")}').detail, /RE2/);
  const ok = compileMappings([{ name: 'm', expression: '{"corp": claims.email.matches("@corp\\\\.com$")}' }]);
  assert.deepEqual(ok.evaluate(input({ email: 'a@corp.com' })).corp, true);
});

test('matches() runs on RE2: a pattern that backtracks exponentially in a JS RegExp costs nothing on hostile request data (issue 8 item 3)', () => {
  const m = compileMappings([{ name: 'm', expression: '{"hit": request.headers["x-probe"].matches("^(a+)+$"), "fn": matches(request.headers["x-probe"], "^(a|aa)+$")}' }]);
  const hostile = 'a'.repeat(30) + '!';
  const t0 = process.hrtime.bigint();
  const out = m.evaluate({ ...input({ sub: '1' }), request: { host: 'h', path: '/', headers: { 'x-probe': hostile } } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.equal(out.hit, false);
  assert.equal(out.fn, false);
  // A backtracking engine needs about 2^30 steps for this input (many seconds).
  assert.ok(ms < 200, `took ${ms.toFixed(1)} ms`);
  const rules = compileAccessRules([{ when: 'claims.name.matches("^(a+)+$")' }]);
  const t1 = process.hrtime.bigint();
  assert.deepEqual(rules.check('/', { sub: '1', name: hostile }), { allowed: false, rule: 'access_rules[0]' });
  assert.ok(Number(process.hrtime.bigint() - t1) / 1e6 < 200);
  assert.deepEqual(rules.check('/', { sub: '1', name: 'aaa' }), { allowed: true });
});

test('compiles once: count and repeated evaluation', () => {
  const compiled = compileMappings([
    { name: 'a', expression: '{"x": 1}' },
    { name: 'b', expression: '{"y": provider.slug}' },
  ]);
  assert.equal(compiled.count, 2);
  for (let i = 0; i < 3; i++) assert.deepEqual(compiled.evaluate(input({ sub: '1' })), { sub: '1', x: 1, y: 'demo-app' });
  assert.equal(compileMappings([]).count, 0);
  assert.deepEqual(compileMappings([]).evaluate(input({ a: 1 })), { a: 1 });
});

test('authentik example translated to CEL', () => {
  // Python: return {"ak_proxy": {"backend_override": f"http://foo.bar.baz/{request.user.username}"}}
  const compiled = compileMappings([
    { name: 'backend override', expression: '{"ak_proxy": {"backend_override": "http://foo.bar.baz/" + claims.preferred_username}}' },
  ]);
  const out = compiled.evaluate(input({ sub: 'u1', preferred_username: 'akadmin' }));
  assert.deepEqual(out, { sub: 'u1', preferred_username: 'akadmin', ak_proxy: { backend_override: 'http://foo.bar.baz/akadmin' } });
});

test('IdP ak_proxy first, then mappings deep-merged in order', () => {
  const compiled = compileMappings([
    { name: 'first', expression: '{"ak_proxy": {"backend_override": "http://one", "user_attributes": {"additionalHeaders": {"X-A": "1"}}}, "tags": ["a"]}' },
    { name: 'second', expression: '{"ak_proxy": {"user_attributes": {"additionalHeaders": {"X-B": "2"}}}, "tags": ["b"]}' },
  ]);
  const claims = {
    sub: 'u1',
    ak_proxy: { host_header: 'idp.example', backend_override: 'http://idp', user_attributes: { additionalHeaders: { 'X-IdP': 'yes' } } },
    tags: ['idp'],
  };
  const out = compiled.evaluate(input(claims));
  assert.deepEqual(out, {
    sub: 'u1',
    ak_proxy: {
      host_header: 'idp.example',
      backend_override: 'http://one',
      user_attributes: { additionalHeaders: { 'X-IdP': 'yes', 'X-A': '1', 'X-B': '2' } },
    },
    tags: ['b'],
  });
  // The input is not modified.
  assert.deepEqual(claims.ak_proxy.user_attributes.additionalHeaders, { 'X-IdP': 'yes' });
});

test('each mapping sees the IdP claims, request and provider', () => {
  const compiled = compileMappings([
    { name: 'a', expression: '{"username": "changed"}' },
    { name: 'b', expression: '{"seen": claims.username, "host": request.host, "path": request.path, "ua": request.headers["user-agent"], "p": provider.name}' },
  ]);
  const out = compiled.evaluate(input({ username: 'original' }));
  assert.deepEqual(out, { username: 'changed', seen: 'original', host: 'app.example.com', path: '/dashboard', ua: 'test', p: 'demo' });
});

test('CEL integers become numbers (or strings beyond 2^53), doubles stay numbers', () => {
  const compiled = compileMappings([
    { name: 'nums', expression: '{"small": 42, "neg": -7, "big": 9007199254740993, "u": 3u, "d": 1.5, "calc": claims.age + 1.0, "list": [1, 2], "bytes": b"hi", "dur": duration("90s")}' },
  ]);
  const out = compiled.evaluate(input({ age: 41 }));
  assert.deepEqual(out, { age: 41, small: 42, neg: -7, big: '9007199254740993', u: 3, d: 1.5, calc: 42, list: [1, 2], bytes: 'aGk=', dur: '90s' });
  assert.equal(typeof out.small, 'number');
});

test('missing field raises MappingEvaluationError naming the mapping', () => {
  const compiled = compileMappings([
    { name: 'ok', expression: '{"a": 1}' },
    { name: 'needs department', expression: '{"dept": claims.department}' },
  ]);
  assert.throws(
    () => compiled.evaluate(input({ sub: 'u1' })),
    (err: unknown) => {
      assert.ok(err instanceof MappingEvaluationError);
      assert.equal(err.mapping, 'needs department');
      assert.match(err.detail, /department/);
      assert.match(err.detail, /line 1 column/);
      assert.match(err.message, /needs department/);
      return true;
    },
  );
  // has() guards make it optional.
  const guarded = compileMappings([{ name: 'g', expression: 'has(claims.department) ? {"dept": claims.department} : {}' }]);
  assert.deepEqual(guarded.evaluate(input({ sub: 'u1' })), { sub: 'u1' });
  assert.deepEqual(guarded.evaluate(input({ department: 'eng' })), { department: 'eng', dept: 'eng' });
});

test('wrong runtime type raises MappingEvaluationError', () => {
  const compiled = compileMappings([{ name: 'concat', expression: '{"x": "id-" + claims.uid}' }]);
  assert.throws(() => compiled.evaluate(input({ uid: 5 })), (err: unknown) => err instanceof MappingEvaluationError && err.mapping === 'concat');
});

test('a non-map result at runtime is an error naming the mapping', () => {
  const compiled = compileMappings([{ name: 'dyn result', expression: 'claims.extra' }]);
  assert.deepEqual(compiled.evaluate(input({ extra: { a: 1 } })), { extra: { a: 1 }, a: 1 });
  for (const extra of ['text', 5, ['a'], null]) {
    assert.throws(
      () => compiled.evaluate(input({ extra })),
      (err: unknown) => err instanceof MappingEvaluationError && err.mapping === 'dyn result' && /must return a map/.test(err.detail),
    );
  }
});

test('result size is bounded', () => {
  const compiled = compileMappings([{ name: 'big', expression: '{"blob": claims.blob}' }]);
  assert.deepEqual(compiled.evaluate(input({ blob: 'x'.repeat(1000) })).blob, 'x'.repeat(1000));
  assert.throws(
    () => compiled.evaluate(input({ blob: 'x'.repeat(MAX_RESULT_JSON_LENGTH) })),
    (err: unknown) => err instanceof MappingEvaluationError && err.mapping === 'big' && /limit is 65536/.test(err.detail),
  );
});

test('non-finite doubles cannot become claims', () => {
  const compiled = compileMappings([{ name: 'inf', expression: '{"x": 1.0 / 0.0}' }]);
  assert.throws(() => compiled.evaluate(input({})), (err: unknown) => err instanceof MappingEvaluationError && err.mapping === 'inf');
});

test('deepMerge: maps merge, arrays and scalars replace, inputs untouched', () => {
  const base = { a: { b: 1, c: [1, 2], d: { e: 1 } }, f: 'x', g: { h: 1 } };
  const addition = { a: { c: [3], d: { z: 2 } }, f: { now: 'map' }, g: 'scalar', n: null };
  const out = deepMerge(base, addition);
  assert.deepEqual(out, { a: { b: 1, c: [3], d: { e: 1, z: 2 } }, f: { now: 'map' }, g: 'scalar', n: null });
  assert.deepEqual(base, { a: { b: 1, c: [1, 2], d: { e: 1 } }, f: 'x', g: { h: 1 } });
  (out.f as Record<string, unknown>).now = 'changed';
  assert.deepEqual(addition.f, { now: 'map' });
  const polluted = deepMerge({}, JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.keys(polluted).length, 0);
});
