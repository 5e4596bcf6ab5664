// The forward-auth entry resolvers, without a server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { forwardEntries, underscoreIdentityHeaderIn, splitAbsoluteUrl } from '../../../src/plugins/forward/entries.js';
import { rewriteRequestUrl } from '../../../src/pipeline/context.js';
import type { PeerView } from '../../../src/pipeline/context.js';

const byEntry = (e: string) => forwardEntries.find((r) => r.entry === e)!;
const view = (forwardTrusted = true): PeerView => ({ peerIp: '127.0.0.1', peerTrusted: false, forwardTrusted, requestId: 'r', wantsJson: true });
const req = (url: string, headers: IncomingHttpHeaders, method = 'GET') => ({ method, url, headers, socket: {} });

test('the four endpoints and their paths', () => {
  assert.deepEqual(
    forwardEntries.map((e) => [e.entry, e.path, e.prefix ?? false]),
    [
      ['nginx', '/outpost.goauthentik.io/auth/nginx', false],
      ['traefik', '/outpost.goauthentik.io/auth/traefik', false],
      ['caddy', '/outpost.goauthentik.io/auth/caddy', false],
      ['envoy', '/outpost.goauthentik.io/auth/envoy', true],
    ],
  );
});

test('traefik: the original request from X-Forwarded-*', () => {
  const out = byEntry('traefik').extract(
    req('/outpost.goauthentik.io/auth/traefik', { 'x-forwarded-proto': 'HTTPS', 'x-forwarded-host': 'App.example.com', 'x-forwarded-uri': '/a?b=c', 'x-forwarded-method': 'POST' }),
    view(),
    '/outpost.goauthentik.io/auth/traefik',
  );
  assert.deepEqual(out, { method: 'POST', scheme: 'https', host: 'App.example.com', target: '/a?b=c' });
});

test('nginx: X-Original-URL; query dropped; X-Original-URI with Host', () => {
  const n = byEntry('nginx');
  assert.deepEqual(n.extract(req('/x', { 'x-original-url': 'https://h.example/p/q?x=1' }), view(), '/x'), { method: 'GET', scheme: 'https', host: 'h.example', target: '/p/q' });
  assert.deepEqual(n.extract(req('/x', { 'x-original-url': 'http://h.example' }), view(), '/x'), { method: 'GET', scheme: 'http', host: 'h.example', target: '/' });
  assert.deepEqual(n.extract(req('/x', { 'x-original-uri': '/p?x', host: 'h.example:8080', 'x-original-method': 'DELETE' }), view(), '/x'), { method: 'DELETE', scheme: 'http', host: 'h.example:8080', target: '/p' });
  const own = n.extract(req('/x', { 'x-original-url': 'https://h.example/outpost.goauthentik.io/sign_out' }), view(), '/x');
  assert.equal('kind' in own && own.status, 200);
});

test('envoy: path after the prefix, query and Host; a missing Host → 400 naming it', () => {
  const e = byEntry('envoy');
  assert.deepEqual(e.extract(req('/outpost.goauthentik.io/auth/envoy/a/b?c=d', { host: 'h.example' }, 'PUT'), view(), ''), { method: 'PUT', scheme: 'http', host: 'h.example', target: '/a/b?c=d' });
  assert.deepEqual(e.extract(req('/outpost.goauthentik.io/auth/envoy', { host: 'h.example', 'x-forwarded-proto': 'https' }), view(), ''), { method: 'GET', scheme: 'https', host: 'h.example', target: '/' });
  const missing = e.extract(req('/outpost.goauthentik.io/auth/envoy/a', {}), view(), '');
  assert.ok('kind' in missing && missing.status === 400 && missing.body!.includes('Host'));
});

test('every endpoint: untrusted → 403 naming trusted_proxies, before anything else', () => {
  for (const e of forwardEntries) {
    const out = e.extract(req(e.path, {}), view(false), e.path);
    assert.ok('kind' in out && out.status === 403 && out.body!.includes('trusted_proxies'), e.entry);
  }
});

test('identity headers spelled with "_" are found; the ordinary spelling is not refused', () => {
  for (const name of ['x_authentik_username', 'x-authentik_uid', 'x_authentik-meta-app', 'x-authentik-meta_app']) assert.equal(underscoreIdentityHeaderIn({ [name]: 'v' }), name);
  for (const name of ['x-authentik-username', 'x-authentik', 'x-authentikfoo', 'authorization', 'x-forwarded-host', 'x_other_header']) assert.equal(underscoreIdentityHeaderIn({ [name]: 'v' }), undefined);
  for (const e of forwardEntries) {
    const [path, headers] = e.entry === 'nginx' ? [e.path, { 'x-original-url': 'https://h.example/p' }] : e.entry === 'envoy' ? [e.path + '/p', { host: 'h.example' }] : [e.path, { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'h.example', 'x-forwarded-uri': '/p', 'x-forwarded-method': 'GET' }];
    const ok = e.extract(req(path, { ...headers, 'x-authentik-username': 'mallory' }), view(), path);
    assert.ok(!('kind' in ok), `${e.entry}: a client's X-authentik-username is answered as usual`);
    const refused = e.extract(req(path, { ...headers, x_authentik_username: 'mallory' }), view(), path);
    assert.ok('kind' in refused && refused.status === 403, `${e.entry}: the underscore spelling is refused`);
  }
});

test('X-Original-URL is split in linear time: a 5.5 KB host and a path ending in "#" is refused at once (issue 8 item 3)', () => {
  const n = byEntry('nginx');
  const hostile = 'http://' + 'a'.repeat(5_500) + '/x#';
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 40; i++) {
    const out = n.extract(req('/x', { 'x-original-url': hostile }), view(), '/x');
    assert.ok('kind' in out && out.status === 400, 'refused: a fragment');
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  // The backtracking regex took ~50 ms per request here (~2 s for 40); linear parsing takes microseconds.
  assert.ok(ms < 250, `40 hostile X-Original-URL headers took ${ms.toFixed(1)} ms`);
  // The same split as before, on ordinary and odd inputs.
  const old = /^(https?):\/\/([^/?#]*)([^#]*)$/i;
  for (const url of ['http://h', 'https://h/', 'HTTPS://H:8443/a/b?c=d', 'http://h?x', 'http://h/a#b', 'ftp://h/', 'http:/h', 'http://', 'http://a@b/c', 'httpx://h', 'http://h/?#', ' http://h']) {
    const m = old.exec(url);
    assert.deepEqual(splitAbsoluteUrl(url), m ? { scheme: m[1]!.toLowerCase(), host: m[2]!, rest: m[3]! } : null, url);
  }
});

test('envoy: a "." or ".." segment in the path as received is refused, as nginx and Traefik do (issue 8 item 4)', () => {
  const e = byEntry('envoy');
  for (const raw of ['/outpost.goauthentik.io/auth/envoy/admin/%2e%2e/public/x', '/outpost.goauthentik.io/auth/envoy/admin/../public/x', '/outpost.goauthentik.io/auth/envoy/./x', '/outpost.goauthentik.io/auth/envoy/a/%2E/b']) {
    // What the outpost's normalization leaves in req.url, and the raw target beside it.
    const r = { ...req('/outpost.goauthentik.io/auth/envoy/public/x', { host: 'h.example' }) };
    r.url = rewriteRequestUrl(Object.assign(r, { url: raw }));
    const out = e.extract(r, view(), r.url);
    assert.ok('kind' in out && out.status === 400, `${raw}: ${JSON.stringify(out)}`);
  }
  const ok = { ...req('/outpost.goauthentik.io/auth/envoy/a.b/c', { host: 'h.example' }) };
  rewriteRequestUrl(ok);
  assert.deepEqual(e.extract(ok, view(), ok.url), { method: 'GET', scheme: 'http', host: 'h.example', target: '/a.b/c' });
});
