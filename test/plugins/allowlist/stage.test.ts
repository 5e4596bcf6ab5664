// The allowlist stage, run directly on contexts from the outpost's context factory.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CHALLENGE, CONTINUE, type RequestContext, type Respond, type Stage, type StageOutcome } from '../../../src/pipeline/contract.js';
import { parseConfig } from '../../../src/config/index.js';
import { Outpost } from '../../../src/server/outpost.js';
import { pino } from 'pino';
import { EmbeddedSessionStore } from '../../../src/sessions/embedded-store.js';
import type { Logger } from '../../../src/pipeline/logger.js';
import { configYaml, createHarness, type Harness } from '../support.js';

let h: Harness;
let allowlist: Stage;

before(async () => {
  h = await createHarness({ discover: false });
  allowlist = h.stage('allowlist');
});
after(() => h.close());

/** The stage, then (for a CHALLENGE) the answer of the request's exit, as runToExit gives it. */
function run(ctx: RequestContext): StageOutcome {
  const out = allowlist.run(ctx);
  assert.ok(!(out instanceof Promise), 'the allowlist stage is synchronous');
  if (out.kind !== 'challenge') return out;
  const answer = h.outpost.doors.exit(ctx).challenge(ctx);
  assert.ok(!(answer instanceof Promise), 'this challenge is answered synchronously');
  return answer;
}

/**
 * Traefik, Caddy and Envoy challenges begin the login at the IdP, asynchronously (discovery).
 * This harness has no IdP, so the answer is the "identity provider unreachable" page: never
 * CONTINUE, never the upstream. (The 302 to the IdP is tested end to end in forward-endpoints.)
 */
async function challengeAtIdp(ctx: RequestContext): Promise<Respond> {
  assert.equal(allowlist.run(ctx), CHALLENGE);
  const out = h.outpost.doors.exit(ctx).challenge(ctx);
  assert.ok(out instanceof Promise, 'a forward-auth challenge goes to the IdP');
  const answer = asRespond(await out);
  assert.equal(ctx.allowlisted, false);
  assert.equal(answer.status, 503);
  assert.match(answer.body!, /oidc\.discovery_failed/);
  return answer;
}

function asRespond(out: StageOutcome): Respond {
  assert.equal(out.kind, 'respond', 'expected an answer, got CONTINUE');
  return out as Respond;
}

const startUrl = (base: string, original: string) => `${base}/outpost.goauthentik.io/start?rd=${encodeURIComponent(original)}`;

/** Whether an anonymous proxy request for `path` on app is let through. */
function appAllows(path: string): boolean {
  const ctx = h.proxy('app', path);
  const out = run(ctx);
  assert.equal(ctx.allowlisted, out === CONTINUE, `allowlisted flag agrees with the outcome for ${path}`);
  return out === CONTINUE;
}

describe('anonymous proxy requests', () => {
  test('an allowlisted path naming a COPY/MOVE Destination → 403, through every door', () => {
    for (const ctx of [h.proxy('app', '/public/a', { destination: 'https://app.localtest/private/a' }), h.nginx('https://fwd.localtest/public/a', { destination: 'https://fwd.localtest/private/a' })]) {
      const r = asRespond(allowlist.run(ctx) as StageOutcome);
      assert.equal(r.status, 403);
      assert.match(r.body!, /allowlist\.destination_anonymous/);
      assert.equal(ctx.allowlisted, false);
    }
  });

  test('a matching line → CONTINUE and ctx.allowlisted', () => {
    const ctx = h.proxy('app', '/public/logo.png?v=3');
    assert.equal(ctx.allowlisted, false);
    assert.equal(run(ctx), CONTINUE);
    assert.equal(ctx.allowlisted, true);
    assert.equal(ctx.setCookies, null);
  });

  test('no match → 302 to <external_host>/outpost.goauthentik.io/start with rd = the original URL and its query', () => {
    const ctx = h.proxy('app', '/private/page?x=1&y=%2F&z=a%20b');
    const out = asRespond(run(ctx));
    assert.equal(out.status, 302);
    assert.equal(out.headers?.location, startUrl('https://app.localtest', 'https://app.localtest/private/page?x=1&y=%2F&z=a%20b'));
    assert.equal(out.headers?.['cache-control'], 'no-store');
    assert.equal(ctx.allowlisted, false);
  });

  test('rd carries the normalized path and the scheme/host the client used (non-default port kept)', () => {
    const plain = asRespond(run(h.proxy('other', '/a//b/../c%7e', {}, { encrypted: false })));
    // external_host is https://other.localtest:8443, the request came over plain http on that host.
    assert.equal(plain.headers?.location, startUrl('https://other.localtest:8443', 'http://other.localtest:8443/a/c~'));
    const noQuery = asRespond(run(h.proxy('app', '/private')));
    assert.equal(noQuery.headers?.location, startUrl('https://app.localtest', 'https://app.localtest/private'));
  });

  test('wantsJson → 401 JSON, never a redirect', () => {
    for (const headers of [{ accept: 'application/json' }, { 'x-requested-with': 'XMLHttpRequest' }]) {
      const ctx = h.proxy('app', '/private/api', headers);
      assert.equal(ctx.wantsJson, true);
      const out = asRespond(run(ctx));
      assert.equal(out.status, 401);
      assert.equal(out.headers?.location, undefined);
      assert.match(String(out.headers?.['content-type']), /^application\/json/);
      assert.equal(out.headers?.['www-authenticate'], 'Bearer realm="portcullis"');
      const body = JSON.parse(out.body!) as { error: string; request_id: string };
      assert.equal(body.error, 'auth.required');
      assert.equal(body.request_id, ctx.requestId);
    }
  });

  test('an Authorization header that is not a token, with intercept_header_auth (default on) → 401, no redirect', () => {
    for (const authorization of ['Digest abc', 'Basic ' + Buffer.from('alice:pw').toString('base64')]) {
      const out = asRespond(run(h.proxy('app', '/private', { authorization })));
      assert.equal(out.status, 401, authorization);
      assert.equal(out.headers?.location, undefined);
      assert.match(out.body!, /auth\.header_auth_unsupported/);
    }
  });

  test('a refused bearer token → 401 invalid_token in every entry, never a redirect', () => {
    for (const ctx of [h.proxy('app', '/private'), h.proxy('app', '/private', { accept: 'application/json' }), h.nginx('https://fwd.localtest/x'), h.traefik('https://fwd.localtest/x')]) {
      ctx.headerAuth = 'refused';
      const out = asRespond(run(ctx));
      assert.equal(out.status, 401, ctx.entry);
      assert.equal(out.headers?.location, undefined);
      assert.equal(out.headers?.['www-authenticate'], 'Bearer realm="portcullis", error="invalid_token"');
      assert.match(out.body!, /auth\.invalid_token/);
    }
  });

  test('the IdP could not check the token → 503, never a redirect', () => {
    for (const ctx of [h.proxy('app', '/private'), h.nginx('https://fwd.localtest/x')]) {
      ctx.headerAuth = 'unavailable';
      const out = asRespond(run(ctx));
      assert.equal(out.status, 503, ctx.entry);
      assert.equal(out.headers?.location, undefined);
      assert.match(out.body!, /auth\.idp_unavailable/);
    }
  });

  test('a refused token on an allowlisted path → CONTINUE (anonymous)', () => {
    const ctx = h.proxy('app', '/public/x');
    ctx.headerAuth = 'refused';
    assert.equal(run(ctx), CONTINUE);
    assert.equal(ctx.allowlisted, true);
  });

  test('a session → CONTINUE without checking the allowlist', () => {
    for (const path of ['/private', '/public/x']) {
      const ctx = h.proxy('app', path);
      ctx.session = h.session('app');
      assert.equal(run(ctx), CONTINUE);
      assert.equal(ctx.allowlisted, false, `not marked allowlisted on ${path}`);
    }
  });
});

describe('how lines are compiled (one RE2 alternation)', () => {
  test('blank and whitespace-only lines never match everything', () => {
    for (const path of ['/', '/private', '/admin/users', '/x?y']) assert.equal(appAllows(path), false, path);
  });

  test('a provider with no lines allowlists nothing', () => {
    for (const path of ['/', '/public/x', '/anything']) {
      const out = asRespond(run(h.proxy('other', path)));
      assert.equal(out.status, 302, path);
    }
  });

  test('(?i) in one line stays in that line', () => {
    assert.equal(appAllows('/caseless/x'), true);
    assert.equal(appAllows('/CaseLess/x'), true, '(?i) applies to its own line');
    assert.equal(appAllows('/Exact'), true);
    assert.equal(appAllows('/EXACT'), false, '(?i) of another line must not make ^/Exact$ case-insensitive');
    assert.equal(appAllows('/exact'), false);
    assert.equal(appAllows('/PUBLIC/x'), false, '(?i) must not leak into an earlier line either');
  });

  test('anchors belong to each line: ^/Exact$ does not match a longer path', () => {
    assert.equal(appAllows('/Exact/more'), false);
    assert.equal(appAllows('/x/Exact'), false);
  });

  test('a line of a CRLF file matches without its CR', () => {
    assert.equal(appAllows('/crlf'), true);
  });

  test('the query string never takes part', () => {
    assert.equal(appAllows('/private?next=/public/x'), false);
    assert.equal(appAllows('/private?/anywhere-x'), false);
    assert.equal(appAllows('/private?q=/Exact'), false);
    assert.equal(appAllows('/x/anywhere-y?z'), true, 'an unanchored line still matches the path');
  });

  test('lines see the normalized path (dot segments resolved, unreserved escapes decoded)', () => {
    assert.equal(appAllows('/public/../private'), false);
    assert.equal(appAllows('/private/../public/x'), true);
    assert.equal(appAllows('/%70ublic/x'), true);
    assert.equal(appAllows('//public/x'), true);
  });

  test('each line is a group of its own: a line valid alone stays valid in the alternation', async (t) => {
    // `\Q…` without `\E` is a valid RE2 regex on its own (it quotes to the end), so config
    // validation accepts it; in `(?:\Q…)|(?:…)` it also swallows the closing parenthesis.
    const skip = ['\\Qliteral', '^/other$'].join('\n');
    const config = parseConfig(configYaml(h.issuer, { appSkip: skip }), { source: 'quoted line', baseDir: process.cwd() });
    const silent = pino({ level: 'silent' });
    const store = new EmbeddedSessionStore({ path: null, keys: new Map(), log: silent as unknown as Logger });
    let built: Outpost;
    try {
      built = await Outpost.create(config, { logger: silent, store });
    } catch (err) {
      t.diagnostic(`Outpost.create threw: ${(err as Error).message}`);
      assert.fail(`a skip_path_regex accepted by config validation made the allowlist stage fail to build: ${(err as Error).message}`);
    }
    try {
      const stage = built.stages.find((b) => b.stage.name === 'allowlist')!.stage;
      const ctx = (path: string) => {
        const c = built.contexts.build({ method: 'GET', url: path, headers: { host: 'app.localtest' }, socket: { remoteAddress: '192.0.2.7', encrypted: true } }, 'quoted');
        assert.ok(!('kind' in c));
        return c;
      };
      assert.equal(stage.run(ctx('/other')), CONTINUE);
      assert.equal(await stage.run(ctx('/private')), CHALLENGE);
    } finally {
      await built.close();
    }
  });
});

describe('forward-auth entries', () => {
  test('nginx: a protected path → 401 "unauthorized request" (nginx redirects itself)', () => {
    const ctx = h.nginx('https://fwd.localtest/private?x=1');
    assert.equal(ctx.entry, 'nginx');
    const out = asRespond(run(ctx));
    assert.equal(out.status, 401);
    assert.equal(out.body, 'unauthorized request');
    assert.equal(out.headers?.location, undefined);
    assert.match(String(out.headers?.['content-type']), /^text\/plain/);
  });

  test('nginx: also 401 when the client wants JSON', () => {
    const out = asRespond(run(h.nginx('https://fwd.localtest/private', { accept: 'application/json' })));
    assert.equal(out.status, 401);
    assert.equal(out.body, 'unauthorized request');
  });

  test('nginx: an allowlisted path → CONTINUE', () => {
    const ctx = h.nginx('https://fwd.localtest/public/app.js');
    assert.equal(run(ctx), CONTINUE);
    assert.equal(ctx.allowlisted, true);
  });

  test('traefik (forward_single): a protected path → the login begins at the IdP', async () => {
    await challengeAtIdp(h.traefik('https://fwd.localtest/private/x?a=1&b=2'));
  });

  test('forward_domain: lines see scheme://host/path', async () => {
    const ctx = h.traefik('https://wiki.corp.localtest/public/page?x=1');
    assert.equal(ctx.provider.name, 'dom');
    assert.equal(run(ctx), CONTINUE);
    assert.equal(ctx.allowlisted, true);
    // Another host of the domain: the line names wiki only.
    await challengeAtIdp(h.traefik('https://git.corp.localtest/public/page'));
    // The scheme is part of the subject.
    await challengeAtIdp(h.traefik('http://wiki.corp.localtest/public/page'));
    // A path-only line does not match in forward_domain (the subject starts with the scheme).
    await challengeAtIdp(h.traefik('https://wiki.corp.localtest/plain/x'));
  });

  test('forward_domain: never the query', async () => {
    await challengeAtIdp(h.traefik('https://git.corp.localtest/private?u=https://wiki.corp.localtest/public/'));
    await challengeAtIdp(h.traefik('https://git.corp.localtest/private?x=/leak-check/'));
    // The unanchored line matches when it is in the path.
    assert.equal(run(h.traefik('https://git.corp.localtest/a/leak-check/b?x=1')), CONTINUE);
  });
});
