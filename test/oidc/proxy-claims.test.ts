import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateProxyClaims, type ProxyClaimsPolicy } from '../../src/oidc/proxy-claims.js';

const open: ProxyClaimsPolicy = { allowIdentityHeaderOverride: false };
const headers = (additionalHeaders: unknown, policy: ProxyClaimsPolicy = open) =>
  validateProxyClaims({ ak_proxy: { user_attributes: { additionalHeaders } } }, policy);

test('no ak_proxy claim: nothing to do, no problems', () => {
  assert.deepEqual(validateProxyClaims({ sub: 'x' }, open), { backendOverride: null, hostHeader: null, additionalHeaders: [], problems: [] });
});

test('ak_proxy that is not a map is reported', () => {
  const v = validateProxyClaims({ ak_proxy: 'http://x' }, open);
  assert.equal(v.backendOverride, null);
  assert.match(v.problems[0]!, /^ak_proxy: must be a map/);
});

test('good backend_override: only the origin is used', () => {
  const v = validateProxyClaims({ ak_proxy: { backend_override: 'http://foo.bar.baz/akadmin?x=1' } }, open);
  assert.deepEqual(v.backendOverride, { origin: 'http://foo.bar.baz', host: 'foo.bar.baz' });
  assert.deepEqual(v.problems, []);
  const tls = validateProxyClaims({ ak_proxy: { backend_override: 'https://Backend-Bob:8443/' } }, open);
  assert.deepEqual(tls.backendOverride, { origin: 'https://backend-bob:8443', host: 'backend-bob:8443' });
});

test('bad backend_override values are dropped with a problem naming the field', () => {
  for (const bad of ['not a url', '/relative/path', 'ftp://files.example/', 'file:///etc/passwd', 'http://user:pw@internal/', 'javascript:alert(1)', 42, ['http://x']]) {
    const v = validateProxyClaims({ ak_proxy: { backend_override: bad } }, open);
    assert.equal(v.backendOverride, null, String(bad));
    assert.equal(v.problems.length, 1, String(bad));
    assert.match(v.problems[0]!, /^ak_proxy\.backend_override: /);
  }
  assert.deepEqual(validateProxyClaims({ ak_proxy: { backend_override: '' } }, open).problems, []);
});

test('allowedBackendHosts: hostname or host:port must be listed', () => {
  const policy: ProxyClaimsPolicy = { allowIdentityHeaderOverride: false, allowedBackendHosts: ['backend-a', 'Backend-B:8080'] };
  const check = (url: string) => validateProxyClaims({ ak_proxy: { backend_override: url } }, policy);
  assert.deepEqual(check('http://backend-a:9000/x').backendOverride, { origin: 'http://backend-a:9000', host: 'backend-a:9000' });
  assert.deepEqual(check('http://BACKEND-B:8080').backendOverride, { origin: 'http://backend-b:8080', host: 'backend-b:8080' });
  const wrongPort = check('http://backend-b:9090');
  assert.equal(wrongPort.backendOverride, null);
  assert.match(wrongPort.problems[0]!, /backend_override: host backend-b:9090 is not in allowed_backend_hosts/);
  const evil = check('http://evil.example');
  assert.equal(evil.backendOverride, null);
  assert.match(evil.problems[0]!, /evil\.example/);
});

test('host_header must be host[:port]', () => {
  for (const good of ['app.internal', 'app.internal:8080', '10.0.0.1', '[::1]:443', 'svc_name']) {
    const v = validateProxyClaims({ ak_proxy: { host_header: good } }, open);
    assert.equal(v.hostHeader, good);
    assert.deepEqual(v.problems, []);
  }
  for (const bad of ['http://app', 'app/path', 'app:99999', 'a b', 'app\r\nX-Evil: 1', '', 7]) {
    const v = validateProxyClaims({ ak_proxy: { host_header: bad } }, open);
    assert.equal(v.hostHeader, null, String(bad));
    if (bad !== '') assert.match(v.problems[0]!, /^ak_proxy\.host_header: /);
  }
});

test('header values: strings as-is, numbers and booleans as text, others dropped', () => {
  const v = headers({ 'X-Team': 'platform', 'X-Level': 3, 'X-Ratio': 0.5, 'X-Admin': true, 'X-Off': false, 'X-List': ['a'], 'X-Map': { a: 1 }, 'X-Null': null });
  assert.deepEqual(v.additionalHeaders, [
    ['X-Team', 'platform'],
    ['X-Level', '3'],
    ['X-Ratio', '0.5'],
    ['X-Admin', 'true'],
    ['X-Off', 'false'],
  ]);
  assert.equal(v.problems.length, 3);
  for (const p of v.problems) assert.match(p, /^ak_proxy\.user_attributes\.additionalHeaders\["X-(List|Map|Null)"\]: value must be/);
});

test('header values with CR, LF or NUL are dropped', () => {
  const v = headers({ 'X-Split': 'a\r\nX-Injected: 1', 'X-Lf': 'a\nb', 'X-Nul': 'a\0b', 'X-Tab': 'a\tb' });
  assert.deepEqual(v.additionalHeaders, [['X-Tab', 'a\tb']]);
  assert.equal(v.problems.length, 3);
  assert.ok(v.problems.every((p) => /CR, LF or NUL/.test(p)));
});

test('non-Latin-1 header values are kept as text (the header stage encodes them as UTF-8, once)', () => {
  const v = headers({ 'X-Name': 'José 山田', 'X-Latin': 'ü' });
  assert.deepEqual(v.additionalHeaders, [['X-Name', 'José 山田'], ['X-Latin', 'ü']]);
});

test('invalid header names are dropped', () => {
  const v = headers({ 'Bad Name': 'x', 'X(y)': 'x', '': 'x', 'X-Ok': 'x' });
  assert.deepEqual(v.additionalHeaders, [['X-Ok', 'x']]);
  assert.equal(v.problems.length, 3);
  assert.ok(v.problems.every((p) => /RFC 7230 token/.test(p)));
});

test('identity headers are refused, including the underscore variant', () => {
  const v = headers({ 'X-authentik-username': 'root', X_authentik_username: 'root', 'x-forwarded-for': '1.2.3.4', 'X-Forwarded_Proto': 'https', 'X-Custom': 'ok' });
  assert.deepEqual(v.additionalHeaders, [['X-Custom', 'ok']]);
  assert.equal(v.problems.length, 4);
  // The underscore spelling goes first for its "_" (no "_" name is ever sent), the others as identity headers.
  assert.ok(v.problems.some((p) => p.includes('"X_authentik_username"') && /"_"/.test(p)));
  assert.ok(v.problems.some((p) => p.includes('"X-authentik-username"') && /identity header/.test(p)));
});

test('allowIdentityHeaderOverride lets identity headers through, never hop-by-hop/host/cookie', () => {
  const policy: ProxyClaimsPolicy = { allowIdentityHeaderOverride: true };
  const v = headers(
    { 'X-authentik-username': 'svc', 'X-Forwarded-User': 'svc', Host: 'evil', cookie: 'a=b', Connection: 'close', 'Content-Length': 5, 'Transfer_Encoding': 'chunked', Upgrade: 'h2c', 'Keep-Alive': '1', TE: 'trailers' },
    policy,
  );
  assert.deepEqual(v.additionalHeaders, [
    ['X-authentik-username', 'svc'],
    ['X-Forwarded-User', 'svc'],
  ]);
  assert.equal(v.problems.length, 8);
  const refused = headers({ Host: 'x', Cookie: 'x', 'content-length': '1', 'transfer-encoding': 'x', connection: 'x' });
  assert.equal(refused.additionalHeaders.length, 0);
  assert.equal(refused.problems.length, 5);
});

test('additionalHeaders and user_attributes must be maps', () => {
  assert.match(headers(['X-A']).problems[0]!, /^ak_proxy\.user_attributes\.additionalHeaders: must be a map/);
  assert.match(validateProxyClaims({ ak_proxy: { user_attributes: 'x' } }, open).problems[0]!, /^ak_proxy\.user_attributes: must be a map/);
});

test('all fields together', () => {
  const v = validateProxyClaims(
    { ak_proxy: { backend_override: 'http://backend-bob:8080/ignored', host_header: 'bob.internal', user_attributes: { additionalHeaders: { 'X-Team': 'a' } } } },
    { allowIdentityHeaderOverride: false, allowedBackendHosts: ['backend-bob:8080'] },
  );
  assert.deepEqual(v, {
    backendOverride: { origin: 'http://backend-bob:8080', host: 'backend-bob:8080' },
    hostHeader: 'bob.internal',
    additionalHeaders: [['X-Team', 'a']],
    problems: [],
  });
});
