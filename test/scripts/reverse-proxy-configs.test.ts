// The generated reverse-proxy configurations: the docs hold exactly the generator's output, and
// the copied identity headers are exactly the ones the header stage emits.
import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { docFiles, IDENTITY_HEADERS, nginxConfig, caddyConfig, DOC_SETUPS } from '../../scripts/reverse-proxy-configs.js';
import { buildIdentityHeaders } from '../../src/plugins/headers/stage.js';
import type { ProviderRuntime } from '../../src/config/provider.js';
import type { SessionRecord } from '../../src/sessions/store.js';

const root = join(import.meta.dirname, '..', '..');

test('docs/reverse-proxies/ is the generator output (run scripts/gen-proxy-docs.ts after a change)', () => {
  for (const [name, content] of Object.entries(docFiles())) {
    assert.equal(readFileSync(join(root, 'docs', 'reverse-proxies', name), 'utf8'), content, name);
  }
});

test('the copied headers are exactly the identity headers of the header stage', () => {
  const session = { claims: { sub: 's', preferred_username: 'u' }, idToken: 't' } as unknown as SessionRecord;
  const provider = { name: 'p', slug: 'p', oidc: { jwksUri: 'x' }, config: { basic_auth_enabled: false } } as unknown as ProviderRuntime;
  const names = buildIdentityHeaders(session, provider, { outpostName: 'o', version: 'v' }).map(([n]) => n);
  assert.deepEqual(IDENTITY_HEADERS.map((h) => h.toLowerCase()), names);
});

test('nginx: auth_request_set + proxy_set_header for every header, 401 → start, /outpost.goauthentik.io/ to Portcullis', () => {
  const single = nginxConfig(DOC_SETUPS.single);
  for (const h of IDENTITY_HEADERS) {
    assert.ok(single.includes(`auth_request_set $${h.toLowerCase().slice(2).replace(/-/g, '_')} $upstream_http_${h.toLowerCase().replace(/-/g, '_')};`), h);
    assert.ok(single.includes(`proxy_set_header ${h} $`), h);
  }
  assert.match(single, /error_page 401 = @portcullis_signin;/);
  assert.match(single, /return 302 \/outpost\.goauthentik\.io\/start\?rd=\$scheme:\/\/\$http_host\$request_uri;/);
  assert.match(single, /location \/outpost\.goauthentik\.io\/ \{\n\s+proxy_pass http:\/\/portcullis:9000;/);
  const domain = nginxConfig(DOC_SETUPS.domain);
  assert.match(domain, /return 302 https:\/\/auth\.example\.com\/outpost\.goauthentik\.io\/start\?rd=/);
  assert.match(domain, /server_name auth\.example\.com;/);
});

test('Caddy: forward_auth with uri /outpost.goauthentik.io/auth/caddy and copy_headers', () => {
  const c = caddyConfig(DOC_SETUPS.single);
  assert.match(c, /forward_auth portcullis:9000 \{\n\t+uri \/outpost\.goauthentik\.io\/auth\/caddy\n\t+copy_headers X-authentik-username /);
});

test('Traefik and Envoy outputs are valid YAML naming the right endpoints and headers', () => {
  const files = docFiles();
  for (const name of Object.keys(files).filter((n) => n.endsWith('.yml') || n.endsWith('.yaml'))) {
    const doc = parse(files[name]!) as Record<string, unknown>;
    assert.ok(doc, name);
  }
  const file = parse(files['traefik-file-single.yml']!) as { http: { middlewares: { portcullis: { forwardAuth: { address: string; authResponseHeaders: string[] } } } } };
  assert.equal(file.http.middlewares.portcullis.forwardAuth.address, 'http://portcullis:9000/outpost.goauthentik.io/auth/traefik');
  assert.deepEqual(file.http.middlewares.portcullis.forwardAuth.authResponseHeaders, [...IDENTITY_HEADERS]);
  assert.match(files['envoy-single.yaml']!, /path_prefix: \/outpost\.goauthentik\.io\/auth\/envoy/);
});
