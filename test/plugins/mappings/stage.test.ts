// The mappings stage (access rules), run directly on contexts from the outpost's context factory.
// The app provider has two rules: "admins only" on ^/admin(/|$) and "verified email" on ^/reports(/|$).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTINUE, type RequestContext, type Respond, type Stage, type StageOutcome } from '../../../src/pipeline/contract.js';
import type { Claims } from '../../../src/sessions/store.js';
import { createHarness, type Harness } from '../support.js';

let h: Harness;
let mappings: Stage;

before(async () => {
  h = await createHarness({ discover: false });
  mappings = h.stage('mappings');
});
after(() => h.close());

function run(ctx: RequestContext): StageOutcome {
  const out = mappings.run(ctx);
  assert.ok(!(out instanceof Promise), 'the mappings stage is synchronous');
  return out;
}

function signedIn(provider: string, path: string, claims: Partial<Claims> = {}, headers = {}): RequestContext {
  const ctx = h.proxy(provider, path, headers);
  ctx.session = h.session(provider, { claims });
  return ctx;
}

function denied(out: StageOutcome, rule: string): Respond {
  assert.equal(out.kind, 'respond', `expected a 403 from "${rule}", got CONTINUE`);
  const r = out as Respond;
  assert.equal(r.status, 403);
  assert.ok(r.body?.includes(`the access rule &quot;${rule}&quot;`) || r.body?.includes(`the access rule \\"${rule}\\"`), `the answer names the rule "${rule}": ${r.body}`);
  assert.equal(r.headers?.['cache-control'], 'no-store');
  return r;
}

describe('access rules', () => {
  test('a rule that returns false → 403 naming the rule', () => {
    const r = denied(run(signedIn('app', '/admin/users', { groups: ['staff'] })), 'admins only');
    assert.match(String(r.headers?.['content-type']), /^text\/html/);
    assert.match(r.body!, /access\.denied/);
  });

  test('an API client gets the 403 as JSON', () => {
    const ctx = signedIn('app', '/admin', { groups: [] }, { accept: 'application/json' });
    const r = denied(run(ctx), 'admins only');
    const body = JSON.parse(r.body!) as { error: string; message: string; request_id: string };
    assert.equal(body.error, 'access.denied');
    assert.match(body.message, /"admins only"/);
    assert.equal(body.request_id, ctx.requestId);
  });

  test('admins are allowed', () => {
    assert.equal(run(signedIn('app', '/admin/users', { groups: ['staff', 'admins'] })), CONTINUE);
    assert.equal(run(signedIn('app', '/admin', { groups: ['admins'] })), CONTINUE);
  });

  test('a rule applies only to its paths', () => {
    assert.equal(run(signedIn('app', '/administrator', { groups: [] })), CONTINUE, '^/admin(/|$) does not cover /administrator');
    assert.equal(run(signedIn('app', '/home', { groups: [], email_verified: false })), CONTINUE);
  });

  test('the second rule is checked too; a claim that is missing or of the wrong type denies', () => {
    denied(run(signedIn('app', '/reports/2024', { email_verified: false })), 'verified email');
    denied(run(signedIn('app', '/reports', { email_verified: undefined })), 'verified email');
    denied(run(signedIn('app', '/reports', { email_verified: 'true' })), 'verified email');
    assert.equal(run(signedIn('app', '/reports/2024', { email_verified: true })), CONTINUE);
  });

  test('a groups claim that is not a list denies instead of throwing', () => {
    denied(run(signedIn('app', '/admin', { groups: 'admins' })), 'admins only');
    denied(run(signedIn('app', '/admin', { groups: undefined })), 'admins only');
  });

  test('rules see the normalized path, never the query', () => {
    denied(run(signedIn('app', '/public/../admin/x', { groups: [] })), 'admins only');
    denied(run(signedIn('app', '//admin', { groups: [] })), 'admins only');
    denied(run(signedIn('app', '/%61dmin', { groups: [] })), 'admins only');
    assert.equal(run(signedIn('app', '/home?next=/admin', { groups: [] })), CONTINUE);
  });

  test('anonymous allowlisted requests are skipped, whatever the path', () => {
    for (const path of ['/admin', '/reports/x']) {
      const ctx = h.proxy('app', path);
      ctx.allowlisted = true;
      assert.equal(ctx.session, null);
      assert.equal(run(ctx), CONTINUE, path);
    }
  });

  test('a provider without rules lets every session through', () => {
    assert.equal(run(signedIn('other', '/admin', { groups: [] })), CONTINUE);
  });

  test('the verdict is per session: one user denied does not affect the next', () => {
    denied(run(signedIn('app', '/admin', { groups: [] })), 'admins only');
    assert.equal(run(signedIn('app', '/admin', { groups: ['admins'] })), CONTINUE);
    denied(run(signedIn('app', '/admin', { groups: ['staff'] })), 'admins only');
  });

  test('forward entries: a denied session gets 403 (not a redirect); an unnamed rule is named by its index', () => {
    for (const ctx of [h.nginx('https://fwd.localtest/admin/x'), h.traefik('https://fwd.localtest/admin')]) {
      ctx.session = h.session('fwd', { claims: { groups: ['staff'] } });
      const r = denied(run(ctx), 'access_rules[0]');
      assert.equal(r.headers?.location, undefined);
    }
    const admin = h.nginx('https://fwd.localtest/admin');
    admin.session = h.session('fwd', { claims: { groups: ['admins'] } });
    assert.equal(run(admin), CONTINUE);
  });
});
