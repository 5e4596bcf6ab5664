// The one normalization of the request target (src/http/normalize.ts): what every decision
// uses and exactly what the upstream receives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, normalizeHost, splitTarget, hostnameOf, TargetError } from '../../src/http/normalize.js';

function refused(raw: string, reason?: RegExp): void {
  assert.throws(
    () => normalizePath(raw),
    (err: unknown) => {
      assert.ok(err instanceof TargetError, `${JSON.stringify(raw)}: expected a TargetError, got ${String(err)}`);
      if (reason) assert.match(err.reason, reason);
      return true;
    },
    `${JSON.stringify(raw)} should be refused`,
  );
}

function table(cases: Record<string, string>): void {
  for (const [raw, expected] of Object.entries(cases)) assert.equal(normalizePath(raw), expected, JSON.stringify(raw));
}

test('plain paths are returned as they are', () => {
  table({ '/': '/', '/a': '/a', '/a/b/': '/a/b/', '/a..': '/a..', '/a/.../b': '/a/.../b', '/a.b/c-d_e~f': '/a.b/c-d_e~f', "/!$&'()*+,=:@": "/!$&'()*+,=:@" });
});

test('dot segments are resolved and cannot climb above the root', () => {
  table({
    '/a/./b': '/a/b',
    '/a/b/../c': '/a/c',
    '/a/b/..': '/a/',
    '/a/b/.': '/a/b/',
    '/a/./': '/a/',
    '/a/..': '/',
    '/..': '/',
    '/../../etc/passwd': '/etc/passwd',
    '/a/../../b': '/b',
    '/./': '/',
  });
});

test('repeated slashes are merged', () => {
  table({ '//': '/', '/a//b///c': '/a/b/c', '//admin': '/admin', '/a//': '/a/', '/a//../b': '/b' });
});

test('encoded dots are decoded, then resolved like literal ones', () => {
  table({
    '/a/%2E%2E/b': '/b',
    '/a/%2e%2e/%2e/b': '/b',
    '/a/.%2e/b': '/b',
    '/.%2E/x': '/x',
    '/a/b/%2E': '/a/b/',
    '/a/%2E%2E': '/',
  });
});

test('escapes of unreserved characters are decoded; all others kept with upper-case hex', () => {
  table({
    '/%41%7e%5f%2D%30': '/A~_-0',
    '/a%2fb': '/a%2Fb',
    '/a%2Fb': '/a%2Fb',
    '/a%3bb': '/a%3Bb',
    '/a%3fb': '/a%3Fb',
    '/a%20b': '/a%20b',
    '/%c3%a9': '/%C3%A9',
    '/a/%2541/b': '/a/%2541/b',
  });
});

test('%2F stays encoded and is not a separator: no merging or resolution across it', () => {
  assert.equal(normalizePath('/files/a%2Fb/c'), '/files/a%2Fb/c');
  assert.equal(normalizePath('/files/a%2F%2Fb'), '/files/a%2F%2Fb');
  assert.equal(normalizePath('/x/a%2Fb/../c'), '/x/c');
});

test('a dot segment hidden behind an encoded separator or ";" is refused', () => {
  const hidden = /dot segment hidden/;
  refused('/a/..%2Fadmin', hidden);
  refused('/a/..%2fadmin', hidden);
  refused('/a/%2E%2E%2Fadmin', hidden);
  refused('/a/%2e%2e%2fadmin', hidden);
  refused('/a%2F..', hidden);
  refused('/a%2F..%2Fadmin', hidden);
  refused('/%2F%2E%2E', hidden);
  refused('/a/..%5Cadmin', hidden);
  refused('/a/..\\admin', hidden);
  refused('/a/..;/b', hidden);
  refused('/..;/admin', hidden);
  refused('/a/.;/b', hidden);
  refused('/a/..;jsessionid=1/b', hidden);
  refused('/a/%2E%2E;/b', hidden);
  refused('/a/..%3B/b', hidden);
  refused('/a/..%3b/b', hidden);
  // Not dot segments: kept.
  table({ '/a;b': '/a;b', '/a/;/b': '/a/;/b', '/a/...;x/b': '/a/...;x/b', '/a/..x%2Fb': '/a/..x%2Fb', '/a/b;..': '/a/b;..' });
});

test('a dot, slash or backslash encoded twice or more is refused (a backend decoding again would see it)', () => {
  const twice = /double-encoded/;
  for (const raw of ['/public/%252e%252e/admin', '/public/%252E%252E/admin', '/a/%252fb', '/a/%252F', '/a/%255cb', '/a/%255C', '/a/%25%32%65', '/a/%25%32%46x', '/a/%25252e', '/a/%2525252F', '/a/x%25%252e', '/%252e']) {
    refused(raw, twice);
  }
  // %25 before anything else is an ordinary escaped percent sign.
  table({ '/100%25': '/100%25', '/a/%2541': '/a/%2541', '/a/%2520b': '/a/%2520b', '/a/%25': '/a/%25', '/a/%252': '/a/%252', '/a/%25.x': '/a/%25.x' });
});

test('an encoded # stays encoded; a literal # is refused', () => {
  assert.equal(normalizePath('/x%23y'), '/x%23y');
  refused('/x#y', /fragment/);
  refused('/#', /fragment/);
  refused('/a/%2e#x', /fragment/);
});

test('control characters and spaces are refused, literal or encoded', () => {
  for (const raw of ['/x\ty', '/x\ny', '/x\ry', '/x y', '/x\u0000', '/x\u007f', '/a%20b/\u001f']) refused(raw, /control character/);
  for (const raw of ['/x%00', '/x%0A', '/x%0d', '/x%09y', '/x%1F', '/x%7F', '/x%7f']) refused(raw, /encoded control character/);
});

test('invalid percent-encodings are refused', () => {
  for (const raw of ['/x%zz', '/x%4', '/a/%', '/%G0', '/%0g', '/%%41', '/a%2']) refused(raw, /invalid percent-encoding/);
});

test('non-ASCII characters are percent-encoded as UTF-8; lone surrogates are refused', () => {
  table({ '/é': '/%C3%A9', '/日本': '/%E6%97%A5%E6%9C%AC', '/😀/x': '/%F0%9F%98%80/x', '/a\u00a0b': '/a%C2%A0b' });
  // The same resource, whichever spelling the client used.
  assert.equal(normalizePath('/caf%C3%A9'), normalizePath('/café'));
  refused('/\ud800', /invalid character/);
  refused('/x\udc00y', /invalid character/);
});

test('a literal backslash is encoded as %5C (never a separator)', () => {
  table({ '/a\\b': '/a%5Cb', '/\\\\evil.com': '/%5C%5Cevil.com', '/a%5cb': '/a%5Cb' });
});

test('targets that are not origin-form are refused', () => {
  for (const raw of ['', 'a/b', '*', 'http://x/a', '?x=1', '%2Fa']) refused(raw, /not an absolute path/);
});

test('splitTarget keeps the query byte for byte and never normalizes it', () => {
  const raws = ['x=%2e%2e/../y', 'b= c', 'x=%ZZ&y=..//', 'a=%2F&b=\\&c=é', '', '?x', 'a=1&a=2;b'];
  for (const q of raws) {
    assert.deepEqual(splitTarget(`/a/../b?${q}`), { path: '/b', query: q }, JSON.stringify(q));
  }
  assert.deepEqual(splitTarget('/a'), { path: '/a', query: '' });
  assert.deepEqual(splitTarget('/a?'), { path: '/a', query: '' });
  // Only the first ? splits.
  assert.deepEqual(splitTarget('/a?b?c=/../'), { path: '/a', query: 'b?c=/../' });
  assert.throws(() => splitTarget('/a?b#frag'), TargetError);
  assert.throws(() => splitTarget('/a/..%2F?x=1'), TargetError);
});

// ---------------------------------------------------------------------------------------------
// Idempotence and invariants over many generated inputs.
// ---------------------------------------------------------------------------------------------

/** A small seeded PRNG (mulberry32): the same inputs on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  '/', '/', '/', '//', '.', '..', 'a', 'b', 'admin', '%2E', '%2e', '%2F', '%2f', '%5C', '%5c', '\\', ';', '%3B',
  '%41', '%7e', '%25', '%252e', '%20', '%C3%A9', 'é', '日', '~', '-', '_', '%23', '%3F', 'x=1', ';jsessionid=1', '%2',
];

function generated(count: number): string[] {
  const rnd = prng(20240611);
  const out: string[] = [];
  for (let n = 0; n < count; n++) {
    let s = '/';
    const len = 1 + Math.floor(rnd() * 10);
    for (let i = 0; i < len; i++) s += PIECES[Math.floor(rnd() * PIECES.length)];
    out.push(s);
  }
  return out;
}

const FIXED = [
  '/', '/a/./b/../c', '/a//b', '/%2E%2E', '/a%2Fb', '/a\\b', '/é', '/a/b/', '/a/b/..', '/x%23y', '/%41', '/a;b',
  '/a/%252e%252e/b', '/.%2E/x', '/a/...', '/%c3%a9/%7E', '/a/b/.', '//', '/a/..', '/%2e',
];

test('normalizing twice gives the same as once, and every result satisfies the policy', () => {
  const inputs = [...FIXED, ...generated(5000)];
  let accepted = 0;
  let refusedCount = 0;
  for (const raw of inputs) {
    let once: string;
    try {
      once = normalizePath(raw);
    } catch (err) {
      assert.ok(err instanceof TargetError, `${JSON.stringify(raw)} threw ${String(err)}`);
      refusedCount++;
      continue;
    }
    accepted++;
    assert.equal(normalizePath(once), once, `not idempotent: ${JSON.stringify(raw)} -> ${JSON.stringify(once)}`);
    assert.ok(once.startsWith('/'), once);
    assert.ok(!once.includes('//'), `merged slashes: ${once}`);
    assert.ok(!/(^|\/)\.\.?(\/|$)/.test(once), `dot segment left: ${JSON.stringify(raw)} -> ${once}`);
    assert.ok(/^[\x21-\x7e]*$/.test(once), `non-printable or non-ASCII left: ${once}`);
    assert.ok(!once.includes('\\') && !once.includes('#'), `backslash or # left: ${once}`);
    for (const m of once.matchAll(/%(..)/g)) {
      assert.match(m[1]!, /^[0-9A-F]{2}$/, `escape not upper-case hex: ${once}`);
      const v = Number.parseInt(m[1]!, 16);
      assert.ok(!/[A-Za-z0-9\-._~]/.test(String.fromCharCode(v)), `unreserved character left encoded: ${once}`);
    }
  }
  // The generator exercises both sides of the policy.
  assert.ok(accepted > 1000, `accepted ${accepted}`);
  assert.ok(refusedCount > 500, `refused ${refusedCount}`);
});

// ---------------------------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------------------------

test('normalizeHost lower-cases and drops only the scheme\'s default port', () => {
  const cases: [string | undefined, 'http' | 'https', string][] = [
    ['App.Example.COM', 'https', 'app.example.com'],
    ['app.example.com:443', 'https', 'app.example.com'],
    ['app.example.com:80', 'http', 'app.example.com'],
    ['app.example.com:443', 'http', 'app.example.com:443'],
    ['app.example.com:80', 'https', 'app.example.com:80'],
    ['app.example.com:8443', 'https', 'app.example.com:8443'],
    ['  app.example.com:8080 ', 'http', 'app.example.com:8080'],
    ['[::1]:80', 'http', '[::1]'],
    ['[::1]:8080', 'http', '[::1]:8080'],
    ['[::1]', 'https', '[::1]'],
    ['[2001:DB8::1]:443', 'https', '[2001:db8::1]'],
    ['127.0.0.1:9000', 'http', '127.0.0.1:9000'],
    ['app.localtest:9000', 'http', 'app.localtest:9000'],
  ];
  for (const [host, scheme, expected] of cases) assert.equal(normalizeHost(host, scheme), expected, `${host} (${scheme})`);
});

test('normalizeHost drops a trailing dot, with or without a port', () => {
  assert.equal(normalizeHost('app.example.com.', 'http'), 'app.example.com');
  assert.equal(normalizeHost('app.example.com.:80', 'http'), 'app.example.com');
  assert.equal(normalizeHost('App.Example.com.:8080', 'http'), 'app.example.com:8080');
  assert.equal(normalizeHost('.', 'http'), '');
});

test('normalizeHost returns "" for invalid hosts', () => {
  for (const host of [undefined, '', ' ', 'a b', 'evil.com/x', 'evil.com@x', 'x:', 'x:8080:80', 'x:123456', 'x:99999', 'x:-1', '[::1', '::1', 'a\tb', 'a\\b', 'é.com', 'x:80a']) {
    assert.equal(normalizeHost(host, 'http'), '', JSON.stringify(host));
  }
  assert.equal(normalizeHost('x:65535', 'http'), 'x:65535');
});

test('hostnameOf strips the port, keeping IPv6 brackets', () => {
  assert.equal(hostnameOf('app.example.com:8080'), 'app.example.com');
  assert.equal(hostnameOf('app.example.com'), 'app.example.com');
  assert.equal(hostnameOf('[::1]:8080'), '[::1]');
  assert.equal(hostnameOf('[::1]'), '[::1]');
});

test('normalizeHost answers the same the second time, per scheme', () => {
  for (let round = 0; round < 2; round++) {
    assert.equal(normalizeHost('App.Example.com:80', 'http'), 'app.example.com');
    assert.equal(normalizeHost('App.Example.com:80', 'https'), 'app.example.com:80');
    assert.equal(normalizeHost('App.Example.com:443', 'https'), 'app.example.com');
    assert.equal(normalizeHost('bad host', 'http'), '');
  }
  // Past the memo's bound (1,000 values) it starts over, with the same answers.
  for (let i = 0; i < 2_500; i++) assert.equal(normalizeHost(`h${i}.example.com:8080`, 'http'), `h${i}.example.com:8080`);
  assert.equal(normalizeHost('App.Example.com:80', 'http'), 'app.example.com');
});
