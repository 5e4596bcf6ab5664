// The access_rules stage, run directly on contexts from the outpost's context factory.
// The app provider has two rules: "admins only" on ^/admin(/|$) and "verified email" on ^/reports(/|$).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTINUE, type RequestContext, type Respond, type Stage, type StageOutcome } from '../../../src/pipeline/contract.js';
import type { Claims } from '../../../src/sessions/store.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { parseConfig } from '../../../src/config/index.js';
import { Outpost } from '../../../src/server/outpost.js';
import { EmbeddedSessionStore } from '../../../src/sessions/embedded-store.js';
import type { Logger } from '../../../src/pipeline/logger.js';
import { configYaml, createHarness, type Harness } from '../support.js';

let h: Harness;
let accessRules: Stage;

before(async () => {
  h = await createHarness({ discover: false });
  accessRules = h.stage('access_rules');
});
after(() => h.close());

function run(ctx: RequestContext): StageOutcome {
  const out = accessRules.run(ctx);
  assert.ok(!(out instanceof Promise), 'the access_rules stage is synchronous');
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

  test("a COPY/MOVE's Destination is decided by the same rules, also behind a forward-auth endpoint", () => {
    const staff = { groups: ['staff'] };
    // Proxy mode: an allowed request path writing into a denied one.
    denied(run(signedIn('app', '/files/a', staff, { destination: 'https://app.localtest/admin/a' })), 'admins only');
    denied(run(signedIn('app', '/files/a', staff, { destination: '/files/../admin/a' })), 'admins only');
    assert.equal(run(signedIn('app', '/files/a', staff, { destination: 'https://app.localtest/files/b' })), CONTINUE);
    assert.equal(run(signedIn('app', '/files/a', { groups: ['admins'] }, { destination: '/admin/a' })), CONTINUE);
    const bad = run(signedIn('app', '/files/a', staff, { destination: '../admin/a' })) as Respond;
    assert.equal(bad.status, 400);
    // nginx passes the client's headers to auth_request: the Destination is decided there too.
    const fwd = h.nginx('https://fwd.localtest/files/a', { destination: 'https://fwd.localtest/admin/x' });
    fwd.session = h.session('fwd', { claims: staff });
    denied(run(fwd), 'access_rules[0]');
  });
});

describe('the old name "mappings"', () => {
  test('a pipeline naming "stage: mappings" builds the access_rules stage, and the start-up log says to rename it', async () => {
    const lines: { level: number; msg: string; field?: string }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as { level: number; msg: string });
        done();
      },
    });
    const log = pino({ level: 'info' }, sink);
    const doc = parse(configYaml('http://127.0.0.1:1/no-idp')) as Record<string, unknown>;
    doc['pipeline'] = ['auth', 'allowlist', 'mappings', 'headers'].map((stage) => ({ stage }));
    const config = parseConfig(stringify(doc), { source: 'old.yaml', resources: false });
    const memory = new EmbeddedSessionStore({ path: null, keys: new Map(), log: pino({ level: 'silent' }) as unknown as Logger });
    const outpost = await Outpost.create(config, { logger: log, store: memory });
    try {
      assert.deepEqual(outpost.stages.map((b) => b.stage.name), ['auth', 'allowlist', 'access_rules', 'headers']);
      const warning = lines.find((l) => l.level === 40 && /"mappings" is now called "access_rules"/.test(l.msg));
      assert.ok(warning, `a warning names the old and the new name: ${JSON.stringify(lines)}`);
      assert.equal(warning.field, 'pipeline[2].stage');
      // The stage it built is the real one: it refuses what the rules refuse.
      const stage = outpost.stages[2]!.stage;
      const ctx = h.proxy('app', '/admin');
      ctx.session = h.session('app', { claims: { groups: ['staff'] } });
      const out = stage.run(ctx);
      assert.ok(!(out instanceof Promise) && out.kind === 'respond' && out.status === 403);
    } finally {
      await outpost.close();
    }
  });

  test('the default pipeline names the stage access_rules', () => {
    assert.deepEqual(h.outpost.stages.map((b) => b.stage.name), ['auth', 'allowlist', 'access_rules', 'headers']);
  });
});
