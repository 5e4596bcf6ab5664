// Doors: the routes by which requests come in, each declared by the plugin that owns it, each
// building its context and naming its exit. Routing a bare request (Doors, for benchmarks and
// unit tests) agrees with the routes Fastify gets; the context factory knows no endpoint names
// (the auth plugin hands it the action resolver); on a real outpost every method Node parses
// reaches the proxy, and the login and forward-auth endpoints are routes of their own.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { METHODS } from 'node:http';
import { ContextFactory } from '../../src/pipeline/context.js';
import type { Action, RequestContext } from '../../src/pipeline/contract.js';
import { createHarness, type Harness } from '../plugins/support.js';
import { startStack, type Stack } from '../support/stack.js';
import { httpGet } from '../support/browserless.js';

let h: Harness;
before(async () => {
  h = await createHarness({ discover: false });
});
after(() => h?.close());

describe('the built-in doors', () => {
  test('each path goes to the door that owns it: login endpoints, forward-auth endpoints (Envoy with the paths below it), the proxy for the rest', () => {
    const doors = h.outpost.doors;
    const cases: [string, string][] = [
      ['/outpost.goauthentik.io/start', 'login'],
      ['/outpost.goauthentik.io/callback', 'login'],
      ['/outpost.goauthentik.io/sign_out', 'login'],
      ['/outpost.goauthentik.io/signed_out', 'login'],
      ['/outpost.goauthentik.io/userinfo', 'login'],
      ['/outpost.goauthentik.io/auth/nginx', 'nginx'],
      ['/outpost.goauthentik.io/auth/traefik', 'traefik'],
      ['/outpost.goauthentik.io/auth/caddy', 'caddy'],
      ['/outpost.goauthentik.io/auth/envoy', 'envoy'],
      ['/outpost.goauthentik.io/auth/envoy/app/page', 'envoy'],
      ['/outpost.goauthentik.io/auth/envoyx', 'proxy'],
      ['/outpost.goauthentik.io/start/', 'proxy'],
      ['/outpost.goauthentik.io/Start', 'proxy'],
      ['/outpost.goauthentik.io/auth/nginx/x', 'proxy'],
      ['/', 'proxy'],
      ['/any/path', 'proxy'],
    ];
    for (const [path, door] of cases) assert.equal(doors.find(path)?.name, door, path);
  });

  test('no route belongs to two doors', () => {
    const seen = new Map<string, string>();
    for (const door of h.outpost.doors.all) {
      for (const route of door.routes) {
        assert.equal(seen.get(route), undefined, `${route}: ${door.name} and ${seen.get(route)}`);
        seen.set(route, door.name);
      }
    }
  });

  test('each door names its exit: proxy → upstream, forward-auth → forward, login endpoints (direct or forwarded) and signatures → login', () => {
    const exitOf = (ctx: RequestContext) => h.outpost.doors.exit(ctx).name;
    assert.equal(exitOf(h.proxy('app', '/x')), 'upstream');
    assert.equal(exitOf(h.proxy('app', '/outpost.goauthentik.io/start?rd=/')), 'login');
    assert.equal(exitOf(h.proxy('app', '/x?X-authentik-auth-callback=true&code=c&state=s')), 'login');
    assert.equal(exitOf(h.nginx('https://fwd.localtest/x')), 'forward');
    assert.equal(exitOf(h.traefik('https://fwd.localtest/outpost.goauthentik.io/callback?code=c&state=s')), 'login');
    // Through a forward-auth endpoint, signed_out and userinfo are ordinary paths (a 2xx would mean "allow").
    assert.equal(exitOf(h.traefik('https://fwd.localtest/outpost.goauthentik.io/userinfo')), 'forward');
  });

  test('the proxy door refuses a forward-mode host (404) and the forward-auth doors a proxy-mode one (400)', () => {
    const direct = h.build({ url: '/x', host: 'fwd.localtest' });
    assert.ok('kind' in direct);
    assert.equal(direct.status, 404);
    assert.match(direct.body!, /routing\.forward_mode_no_upstream/);
    const login = h.build({ url: '/outpost.goauthentik.io/start', host: 'fwd.localtest' });
    assert.ok(!('kind' in login), 'the login endpoints are served on a forward-mode host');
    const forwarded = h.build({ url: '/outpost.goauthentik.io/auth/nginx', host: 'app.localtest', peer: '10.0.0.1', headers: { 'x-original-url': 'https://app.localtest/x' } });
    assert.ok('kind' in forwarded);
    assert.equal(forwarded.status, 400);
    assert.match(forwarded.body!, /routing\.not_forward_mode/);
  });
});

describe('ContextFactory', () => {
  test('knows no endpoint names: the action comes from the resolver it is given', () => {
    const seen: [string, boolean][] = [];
    const factory = new ContextFactory(h.outpost.providers, [], (target, forwarded): Action => {
      seen.push([target.path, forwarded]);
      return target.path === '/my-login' ? 'start' : 'request';
    });
    const req = (url: string) => ({ method: 'GET', url, headers: { host: 'app.localtest' }, socket: { remoteAddress: '127.0.0.1', encrypted: true } });
    const a = factory.build(req('/my-login'), 'r1') as RequestContext;
    assert.equal(a.action, 'start');
    const b = factory.build(req('/outpost.goauthentik.io/start'), 'r2') as RequestContext;
    assert.equal(b.action, 'request', 'the built-in login path means nothing to the factory itself');
    assert.deepEqual(seen, [
      ['/my-login', false],
      ['/outpost.goauthentik.io/start', false],
    ]);
  });
});

describe('on a real outpost', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ providers: [{ name: 'app', host: 'app.localtest', extra: { skip_path_regex: '^/public(/|$)' } }] });
  });
  after(() => stack?.close());

  test('every method Node parses (all of http.METHODS but CONNECT) is proxied through the chain', async () => {
    const methods = METHODS.filter((m) => m !== 'CONNECT' && m !== 'TRACE');
    assert.ok(methods.length > 30, `Node parses ${methods.length} methods`);
    for (const method of methods) {
      // QUERY must name its content's type (RFC 10008 §2; Fastify refuses it without, 400).
      const body = method === 'QUERY' ? { headers: { 'content-type': 'text/plain' }, body: 'q' } : {};
      const res = await httpGet(stack.url('app.localtest', '/public/x'), { method, ...body });
      assert.equal(res.status, 200, method);
      if (method !== 'HEAD') assert.equal((JSON.parse(res.body) as { method: string }).method, method);
      // Protected paths are challenged for every method too.
      const protectedRes = await httpGet(stack.url('app.localtest', '/private'), { method, headers: { accept: 'text/html' } });
      assert.equal(protectedRes.status, 302, `${method} /private`);
    }
    // TRACE would echo the identity headers back: the upstream exit refuses it.
    assert.equal((await httpGet(stack.url('app.localtest', '/public/x'), { method: 'TRACE' })).status, 405);
  });

  test('the login endpoints answer for any method on their own routes', async () => {
    for (const method of ['GET', 'POST', 'PROPFIND']) {
      const res = await httpGet(stack.url('app.localtest', '/outpost.goauthentik.io/signed_out'), { method });
      assert.equal(res.status, 200, method);
      assert.match(res.body, /signed out/i);
    }
  });
});
