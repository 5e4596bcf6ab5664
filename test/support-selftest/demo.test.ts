import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { startDemo, type RunningDemo } from '../../src/demo/demo.js';
import { startDemoUpstream } from '../../src/demo/demo-upstream.js';
import { CookieJar, followRedirects, httpGet } from '../support/browserless.js';

describe('npm start demo', () => {
  let demo: RunningDemo;
  before(async () => {
    demo = await startDemo({ idpPort: 0, upstreamPort: 0, portcullisUrl: 'http://localhost:9000' });
  });
  after(async () => {
    await demo.close();
  });

  it('returns a config of the documented shape', () => {
    const cfg = parse(demo.configYaml) as {
      outpost: { name: string; listeners: { http: string; https: string }; session_store: { type: string; path: string } };
      providers: Record<string, string>[];
    };
    assert.equal(cfg.outpost.name, 'Portcullis demo outpost');
    assert.deepEqual(cfg.outpost.listeners, { http: '127.0.0.1:9000', https: '127.0.0.1:9443' });
    assert.deepEqual(cfg.outpost.session_store, { type: 'embedded', path: '.portcullis/demo-sessions.db' });
    assert.equal(cfg.providers.length, 1);
    const p = cfg.providers[0]!;
    assert.equal(p.name, 'demo');
    assert.equal(p.issuer, demo.issuer);
    assert.equal(p.client_id, 'portcullis-demo');
    assert.ok(p.client_secret!.length >= 32);
    assert.equal(p.cookie_secret!.length, 32);
    assert.equal(p.external_host, 'http://localhost:9000');
    assert.equal(p.internal_host, demo.upstreamUrl);
    assert.equal(p.mode, 'proxy');
    assert.equal(p.skip_path_regex, '^/public/\n');
    assert.equal(p.assigned_application_slug, 'demo');
    assert.equal(p.assigned_application_name, 'Portcullis demo application');
    assert.match(demo.banner, /DEMO MODE — embedded identity provider, not for production\./);
    assert.match(demo.banner, /alice\/alice or bob\/bob/);
  });

  it('the IdP knows the demo client with the authentik-style callback', async () => {
    const redirect = 'http://localhost:9000/outpost.goauthentik.io/callback?X-authentik-auth-callback=true';
    const url = new URL(`${demo.issuer}/auth`);
    url.search = new URLSearchParams({ client_id: 'portcullis-demo', response_type: 'code', scope: 'openid profile', redirect_uri: redirect }).toString();
    const { final } = await followRedirects(url.href, { jar: new CookieJar() });
    assert.equal(final.status, 200);
    assert.match(final.body, /id="username"/);
    assert.match(final.body, /Portcullis demo/);
    const meta = JSON.parse((await httpGet(`${demo.issuer}/.well-known/openid-configuration`)).body) as { issuer: string };
    assert.equal(meta.issuer, demo.issuer);
  });

  it('the demo application shows identity headers, escaped', async () => {
    const res = await httpGet(`${demo.upstreamUrl}/reports?month=11`, {
      headers: {
        'X-authentik-username': 'alice<script>',
        'X-authentik-groups': 'admins|staff',
        'X-Forwarded-Proto': 'http',
        'X-Demo-Team': 'platform',
      },
    });
    assert.equal(res.status, 200);
    assert.match(res.body, /<title>Portcullis demo application<\/title>/);
    assert.match(res.body, /X-authentik-username/);
    assert.match(res.body, /alice&lt;script&gt;/);
    assert.ok(!res.body.includes('alice<script>'));
    assert.match(res.body, /admins\|staff/);
    assert.match(res.body, /X-Demo-Team/);
    assert.match(res.body, /X-Forwarded-Proto/);
    assert.match(res.body, /href="\/outpost\.goauthentik\.io\/sign_out"/);
    assert.match(res.body, /demo application/);
    assert.doesNotMatch(res.body, /no login needed/);
  });

  it('the demo application has a public page', async () => {
    const res = await httpGet(`${demo.upstreamUrl}/public/info`);
    assert.equal(res.status, 200);
    assert.match(res.body, /public page, no login needed/);
  });

  it('startDemoUpstream can be started on its own', async () => {
    const up = await startDemoUpstream({ port: 0 });
    try {
      assert.equal((await httpGet(`${up.url}/`)).status, 200);
    } finally {
      await up.close();
    }
  });
});
