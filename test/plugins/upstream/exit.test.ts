// The upstream exit (target choice only: the proxying itself is the Fastify side), run directly
// on contexts from the outpost's context factory.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTINUE, type RequestContext, type Stage } from '../../../src/pipeline/contract.js';
import type { UpstreamExit } from '../../../src/plugins/upstream/exit.js';
import type { SessionProxySettings } from '../../../src/sessions/store.js';
import { createHarness, valuesOf, type Harness } from '../support.js';

let h: Harness;
let upstream: UpstreamExit;
let headers: Stage;

before(async () => {
  h = await createHarness({ discover: false });
  upstream = h.exit<UpstreamExit>('upstream');
  headers = h.stage('headers');
});
after(() => h.close());

function run(ctx: RequestContext): RequestContext {
  assert.equal(upstream.finish(ctx), CONTINUE);
  return ctx;
}

/** A proxied request as the chain has it when the upstream stage runs: the header list built. */
function withHeaders(provider: string, path: string, proxy?: SessionProxySettings | null, clientHeaders = {}): RequestContext {
  const ctx = h.proxy(provider, path, clientHeaders);
  if (proxy !== null) ctx.session = h.session(provider, proxy === undefined ? {} : { proxy });
  assert.equal(headers.run(ctx), CONTINUE);
  return ctx;
}

describe('default target', () => {
  test('origin and Host header from internal_host (its path ignored)', () => {
    const ctx = run(withHeaders('app', '/x'));
    assert.deepEqual(ctx.upstream, { origin: 'http://app-internal.localtest:8080', hostHeader: 'app-internal.localtest:8080' });
    const other = run(withHeaders('other', '/x'));
    assert.deepEqual(other.upstream, { origin: 'http://127.0.0.1:9', hostHeader: '127.0.0.1:9' });
  });

  test('the same frozen target for every request of a provider, anonymous or not', () => {
    const a = run(withHeaders('app', '/a'));
    const b = run(withHeaders('app', '/b', null));
    assert.equal(a.upstream, b.upstream);
    assert.ok(Object.isFrozen(a.upstream));
  });

  test('a session without overrides uses the default', () => {
    const ctx = run(withHeaders('app', '/', { additionalHeaders: [['x-team', 'a']] }));
    assert.deepEqual(ctx.upstream, { origin: 'http://app-internal.localtest:8080', hostHeader: 'app-internal.localtest:8080' });
  });
});

describe('the Host header in the upstream list', () => {
  test('appended once, with the target\'s Host (the client\'s Host is not forwarded)', () => {
    const ctx = run(withHeaders('app', '/x', undefined, { 'x-app': '1' }));
    const list = ctx.upstreamHeaders!;
    assert.deepEqual(valuesOf(list, 'host'), ['app-internal.localtest:8080']);
    assert.deepEqual(list.slice(-2), ['host', 'app-internal.localtest:8080']);
  });

  test('without an upstream list (a chain without the header stage) only the target is chosen', () => {
    const ctx = h.proxy('app', '/');
    run(ctx);
    assert.equal(ctx.upstreamHeaders, null);
    assert.equal(ctx.upstream?.origin, 'http://app-internal.localtest:8080');
  });
});

describe('session overrides (decided at login)', () => {
  test('backend_override: origin and Host from the override', () => {
    const ctx = run(withHeaders('app', '/x', { backendOrigin: 'https://backend-alice.localtest:9443', backendHost: 'backend-alice.localtest:9443' }));
    assert.deepEqual(ctx.upstream, { origin: 'https://backend-alice.localtest:9443', hostHeader: 'backend-alice.localtest:9443' });
    assert.deepEqual(valuesOf(ctx.upstreamHeaders!, 'host'), ['backend-alice.localtest:9443']);
  });

  test('host_header alone: default origin, that Host', () => {
    const ctx = run(withHeaders('app', '/x', { hostHeader: 'vhost.example' }));
    assert.deepEqual(ctx.upstream, { origin: 'http://app-internal.localtest:8080', hostHeader: 'vhost.example' });
    assert.deepEqual(valuesOf(ctx.upstreamHeaders!, 'host'), ['vhost.example']);
  });

  test('both: the override origin with host_header', () => {
    const ctx = run(withHeaders('app', '/x', { backendOrigin: 'http://10.1.2.3:8000', backendHost: '10.1.2.3:8000', hostHeader: 'vhost.example' }));
    assert.deepEqual(ctx.upstream, { origin: 'http://10.1.2.3:8000', hostHeader: 'vhost.example' });
  });

  test('overrides come from the ak_proxy claim exactly as the login validates them', () => {
    const ctx = h.proxy('app', '/');
    ctx.session = h.session('app', { claims: { ak_proxy: { backend_override: 'http://Backend.Example:81/some/path?q', host_header: 'vhost.example:8443' } } });
    run(ctx);
    assert.deepEqual(ctx.upstream, { origin: 'http://backend.example:81', hostHeader: 'vhost.example:8443' });
  });

  test('per session: the same target object for the same session, no bleeding between sessions', () => {
    const session = h.session('app', { proxy: { backendOrigin: 'http://b1.localtest', backendHost: 'b1.localtest' } });
    const first = h.proxy('app', '/1');
    first.session = session;
    const second = h.proxy('app', '/2');
    second.session = session;
    run(first);
    run(second);
    assert.equal(second.upstream, first.upstream);
    assert.deepEqual(first.upstream, { origin: 'http://b1.localtest', hostHeader: 'b1.localtest' });

    const plain = run(withHeaders('app', '/3'));
    assert.equal(plain.upstream?.origin, 'http://app-internal.localtest:8080');
    const otherUser = run(withHeaders('app', '/4', { backendOrigin: 'http://b2.localtest', backendHost: 'b2.localtest' }));
    assert.equal(otherUser.upstream?.origin, 'http://b2.localtest');
    assert.equal(run(withHeaders('app', '/5', { hostHeader: 'h5.example' })).upstream?.origin, 'http://app-internal.localtest:8080');
  });

  test('per session with a store that decodes a new object per read: keyed by session id and issue time', () => {
    const session = h.session('app', { proxy: { backendOrigin: 'http://b6.localtest', backendHost: 'b6.localtest' } });
    const first = h.proxy('app', '/6');
    first.session = session;
    const copy = h.proxy('app', '/7');
    copy.session = structuredClone(session);
    run(first);
    run(copy);
    assert.equal(copy.upstream, first.upstream, 'one target for both copies of the session');
    const reissued = h.proxy('app', '/8');
    reissued.session = { ...structuredClone(session), createdAt: session.createdAt + 1, proxy: { backendOrigin: 'http://b7.localtest', backendHost: 'b7.localtest' } };
    assert.equal(run(reissued).upstream?.origin, 'http://b7.localtest', 'a record issued anew is not served the old target');
  });
});

describe('forward entries', () => {
  test('never reach this exit (the forward-auth exit answers them): no target, no header list', () => {
    for (const ctx of [h.nginx('https://fwd.localtest/x'), h.traefik('https://wiki.corp.localtest/x')]) {
      ctx.session = h.session(ctx.provider.name, { proxy: { backendOrigin: 'http://b.localtest', backendHost: 'b.localtest' } });
      assert.equal(headers.run(ctx), CONTINUE);
      assert.equal(h.outpost.doors.exit(ctx).name, 'forward');
      assert.equal(ctx.upstream, null);
      assert.equal(ctx.upstreamHeaders, null);
    }
    assert.equal(h.outpost.doors.exit(h.proxy('app', '/x')), upstream);
  });
});

test('transport settings come from the outpost config defaults', () => {
  assert.deepEqual(upstream.transport, { connections: 128, timeoutSeconds: 30 });
});
