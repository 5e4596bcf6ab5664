// The forward-auth entry resolvers, without a server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { forwardEntries, identityHeaderIn } from '../../../src/plugins/forward/entries.js';
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

test('identity headers in any spelling are found', () => {
  for (const name of ['x-authentik-username', 'x_authentik_username', 'x-authentik_uid', 'x_authentik-meta-app']) assert.equal(identityHeaderIn({ [name]: 'v' }), name);
  for (const name of ['x-authentik', 'x-authentikfoo', 'authorization', 'x-forwarded-host']) assert.equal(identityHeaderIn({ [name]: 'v' }), undefined);
});
