// The forward-auth exit (the decision for the reverse proxy), run directly on contexts from the
// outpost's context factory. That proxied requests never reach it is tested in test/pipeline/. The identity headers come from the header stage, as in the chain.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTINUE, type RequestContext, type Respond, type Stage, type StageOutcome } from '../../../src/pipeline/contract.js';
import type { ForwardExit } from '../../../src/plugins/forward/exit.js';
import type { SessionRecord } from '../../../src/sessions/store.js';
import { createHarness, type Harness } from '../support.js';

let h: Harness;
let forward: ForwardExit;
let headers: Stage;

before(async () => {
  h = await createHarness();
  forward = h.exit<ForwardExit>('forward');
  headers = h.stage('headers');
});
after(() => h.close());

function run(ctx: RequestContext): StageOutcome {
  const out = forward.finish(ctx);
  assert.ok(!(out instanceof Promise), 'the forward exit is synchronous');
  return out;
}

function answer(out: StageOutcome): Respond {
  assert.equal(out.kind, 'respond', 'expected an answer, got CONTINUE');
  return out as Respond;
}

/** An authenticated decision request as the chain has it when the forward stage runs. */
function decide(ctx: RequestContext, session: SessionRecord): Respond {
  ctx.session = session;
  assert.equal(headers.run(ctx), CONTINUE);
  return answer(run(ctx));
}

function fwdSession(): SessionRecord {
  return h.session('fwd', {
    claims: {
      groups: ['staff', 'admins'],
      ak_proxy: { user_attributes: { additionalHeaders: { 'X-Team': 'platform', X_Under: 'folded', 'X-Count': 3 } } },
    },
  });
}

describe('authenticated', () => {
  test('one answer per session, also when the store hands back a new record object for every read', () => {
    const session = fwdSession();
    const first = decide(h.nginx('https://fwd.localtest/a'), session);
    const copy = decide(h.nginx('https://fwd.localtest/b'), structuredClone(session));
    assert.equal(copy, first, 'the answer built for the session is reused');
    const envoy = (s: SessionRecord) => {
      const ctx = h.ctx({ url: '/outpost.goauthentik.io/auth/envoy/app', host: 'fwd.localtest', peer: '10.0.0.1', encrypted: false });
      assert.equal(ctx.entry, 'envoy');
      return decide(ctx, s);
    };
    assert.equal(envoy(structuredClone(session)), envoy(structuredClone(session)), 'Envoy answers too');
  });

  test('200 with the identity headers, no-store and an empty body', () => {
    const ctx = h.nginx('https://fwd.localtest/app?x=1');
    const out = decide(ctx, fwdSession());
    assert.equal(out.status, 200);
    assert.equal(out.body, '');
    const hdrs = out.headers!;
    assert.equal(hdrs['cache-control'], 'no-store');
    for (const [name, value] of Object.entries(ctx.identityHeaders!)) {
      if (!name.includes('_')) assert.equal(hdrs[name], value, name);
    }
    assert.equal(hdrs['x-authentik-username'], 'alice');
    assert.equal(hdrs['x-authentik-groups'], 'staff|admins');
    assert.equal(hdrs['x-authentik-meta-provider'], 'fwd');
    assert.ok(String(hdrs['x-authentik-meta-jwks']).startsWith(h.issuer));
    assert.equal(hdrs['x-team'], 'platform');
    assert.equal(hdrs['x-count'], '3');
    assert.equal(Object.keys(hdrs).length, Object.keys(ctx.identityHeaders!).filter((n) => !n.includes('_')).length + 1);
  });

  test('names with _ are never emitted (some servers fold them into -)', () => {
    const ctx = h.traefik('https://fwd.localtest/app');
    const out = decide(ctx, fwdSession());
    assert.equal(ctx.identityHeaders!['x_under'], undefined, 'the header stage never builds one');
    for (const name of Object.keys(out.headers!)) assert.ok(!name.includes('_'), name);
    assert.equal(out.headers!['x-under'], undefined);
  });

  test('the same frozen answer object for the same session; another for another session', () => {
    const session = fwdSession();
    const first = decide(h.nginx('https://fwd.localtest/a'), session);
    const second = decide(h.traefik('https://fwd.localtest/b?c'), session);
    assert.equal(second, first);
    assert.ok(Object.isFrozen(first));
    assert.ok(Object.isFrozen(first.headers));
    assert.throws(() => {
      (first.headers as Record<string, string>)['x-authentik-username'] = 'mallory';
    }, TypeError);

    const other = decide(h.nginx('https://fwd.localtest/a'), h.session('fwd', { claims: { preferred_username: 'bob' } }));
    assert.notEqual(other, first);
    assert.equal(other.headers!['x-authentik-username'], 'bob');
    assert.equal(first.headers!['x-authentik-username'], 'alice');
  });

  test('forward_domain: the identity of the dom provider', () => {
    const out = decide(h.traefik('https://wiki.corp.localtest/page'), h.session('dom'));
    assert.equal(out.status, 200);
    assert.equal(out.headers!['x-authentik-meta-provider'], 'dom');
  });
});

describe('anonymous', () => {
  test('allowlisted → 200 without identity headers', () => {
    const ctx = h.nginx('https://fwd.localtest/public/app.js');
    ctx.allowlisted = true;
    assert.equal(headers.run(ctx), CONTINUE);
    const out = answer(run(ctx));
    assert.equal(out.status, 200);
    assert.deepEqual(out.headers, { 'cache-control': 'no-store' });
    assert.equal(out.body, '');
  });

  test('allowlisted answers never carry a previous session\'s headers', () => {
    decide(h.nginx('https://fwd.localtest/a'), fwdSession());
    const ctx = h.nginx('https://fwd.localtest/public/x');
    ctx.allowlisted = true;
    headers.run(ctx);
    assert.deepEqual(answer(run(ctx)).headers, { 'cache-control': 'no-store' });
  });

  test('neither session nor allowlisted → 401 (fail closed, e.g. the allowlist stage removed)', () => {
    for (const ctx of [h.nginx('https://fwd.localtest/private'), h.traefik('https://fwd.localtest/private')]) {
      assert.equal(headers.run(ctx), CONTINUE);
      const out = answer(run(ctx));
      assert.equal(out.status, 401);
      assert.equal(out.headers?.['cache-control'], 'no-store');
      for (const name of Object.keys(out.headers ?? {})) assert.ok(!name.startsWith('x-authentik-'), name);
    }
  });

  test('a session without identity headers (header stage removed) and not allowlisted → 401', () => {
    const ctx = h.nginx('https://fwd.localtest/private');
    ctx.session = fwdSession();
    assert.equal(ctx.identityHeaders, null);
    assert.equal(answer(run(ctx)).status, 401);
  });
});
