// Regexes and CEL are compiled once, by the config loader, and the stages run those compiled
// objects: text changed after the load is not compiled again. A config the loader did not make
// is compiled on first use, with the loader's errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/index.js';
import { compiledOf, compileSkipPaths, SkipPathsError } from '../../src/config/compiled.js';
import { Outpost } from '../../src/server/outpost.js';
import { EmbeddedSessionStore } from '../../src/sessions/embedded-store.js';
import { CONTINUE, type RequestContext, type Respond } from '../../src/pipeline/contract.js';
import type { Logger } from '../../src/pipeline/logger.js';
import type { SessionRecord } from '../../src/sessions/store.js';

const yaml = `outpost:
  listeners: { http: null, https: null }
  log_level: silent
providers:
  - name: app
    issuer: http://127.0.0.1:1/no-idp
    client_id: app
    client_secret: secret
    cookie_secret: 0123456789abcdef0123456789abcdef
    external_host: https://app.localtest
    internal_host: http://127.0.0.1:8080
    skip_path_regex: "^/public/"
    mappings:
      - name: team
        expression: '{"team": "blue"}'
    access_rules:
      - name: admins only
        paths: ['^/admin(/|$)']
        when: '"admins" in claims.groups'
`;

test('the stages run what the loader compiled: skip_path_regex, access rules and mappings changed after the load are not compiled again', async () => {
  const config = parseConfig(yaml, { source: 'compiled.yaml', resources: false });
  const p = config.providers[0]!;
  // Were anything compiled again from the text, these would change what the stages do.
  p.skip_path_regex = '^/admin/';
  p.access_rules[0]!.when = 'true';
  p.mappings[0]!.expression = '{"team": "red"}';
  const silent = pino({ level: 'silent' });
  const outpost = await Outpost.create(config, { logger: silent, store: new EmbeddedSessionStore({ path: null, keys: new Map(), log: silent as unknown as Logger }) });
  try {
    const stage = (name: string) => outpost.stages.find((b) => b.stage.name === name)!.stage;
    const ctx = (path: string): RequestContext => {
      const built = outpost.contexts.build({ method: 'GET', url: path, headers: { host: 'app.localtest' }, socket: { remoteAddress: '192.0.2.7', encrypted: true } }, `req-${path}`);
      assert.ok(!('kind' in built), `a context for ${path}`);
      return built;
    };
    const anonymous = ctx('/public/x');
    assert.equal(stage('allowlist').run(anonymous), CONTINUE, 'the loaded ^/public/ still lets anonymous requests through');
    assert.equal(anonymous.allowlisted, true);
    const admin = ctx('/admin/users');
    admin.session = { id: 's', provider: 'app', userKey: 'k', createdAt: 0, expiresAt: Date.now() + 60_000, claims: { sub: 'alice', groups: ['staff'] }, idToken: 't' } as SessionRecord;
    const out = stage('access_rules').run(admin) as Respond;
    assert.equal(out.status, 403, 'the loaded rule still denies non-admins');
    const claims = compiledOf(p).mappings.evaluate({ claims: { sub: 'alice' }, request: { host: 'app.localtest', path: '/', headers: {} }, provider: { name: 'app', slug: 'app' } });
    assert.equal(claims['team'], 'blue');
  } finally {
    await outpost.close();
  }
});

test('a provider config the loader did not make is compiled on first use, once; a bad one throws the loader\'s message', () => {
  const loaded = parseConfig(yaml, { source: 'compiled.yaml', resources: false }).providers[0]!;
  const copy = { ...loaded, skip_path_regex: '^/copy/' };
  const compiled = compiledOf(copy);
  assert.equal(compiledOf(copy), compiled, 'compiled once');
  assert.equal(compiled.skipPaths.pattern?.test('/copy/x'), true);
  assert.equal(compiled.accessRules?.check('/admin', { groups: [] }).allowed, false);
  assert.throws(() => compiledOf({ ...loaded, skip_path_regex: '^/ok/\n^/bad/(' }), /line 2 of skip_path_regex \("\^\/bad\/\("\) is not a valid RE2 regex/);
});

test('skip_path_regex: one alternation; \\Q lines apart; each line compiled alone only to name the bad ones', () => {
  const ok = compileSkipPaths('^/a/\n\n(?i)^/B/\n^/q/\\Q(x');
  assert.ok(!(ok instanceof SkipPathsError));
  assert.equal(ok.separate.length, 1);
  assert.equal(ok.pattern?.test('/b/x'), true);
  assert.equal(ok.pattern?.test('/q/(x'), false);
  assert.equal(ok.separate[0]!.test('/q/(x'), true);
  const bad = compileSkipPaths('^/a/(\n^/b/\n^/c/[');
  assert.ok(bad instanceof SkipPathsError);
  assert.deepEqual(bad.problems.map((p) => p.message.slice(0, 9)), ['line 1 of', 'line 3 of']);
  assert.equal(compileSkipPaths('   \n').constructor, Object, 'blank lines only: nothing to compile');
});
