// The chain in Fastify: one onRequest hook per request (not one per stage), stages in order in it,
// the exit after them; and, on a real outpost, a custom `pipeline:` without the former `forward`
// stage still answers forward-auth decisions (the exit is not the pipeline's to drop).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { CONTINUE, respond, type RequestContext, type Stage } from '../../src/pipeline/contract.js';
import { pipelineScope } from '../../src/pipeline/fastify.js';
import type { Door } from '../../src/pipeline/doors.js';
import type { BuiltStage } from '../../src/pipeline/chain.js';
import type { Exit } from '../../src/pipeline/exits.js';
import { startStack, type Stack } from '../support/stack.js';
import { httpGet } from '../support/browserless.js';

function built(stage: Stage): BuiltStage {
  return { stage, definition: { name: stage.name, create: () => stage } };
}

describe('pipelineScope', () => {
  const log: string[] = [];
  const app = Fastify();
  const stages = ['one', 'two', 'three', 'four', 'five'].map((name) =>
    built({
      name,
      run: (ctx) => {
        log.push(name);
        if (name === 'three' && ctx.target.path === '/deny') return respond(403, { 'content-type': 'text/plain' }, 'denied');
        if (name === 'four' && ctx.target.path === '/boom') throw new Error('stage failed');
        return name === 'two' ? Promise.resolve(CONTINUE) : CONTINUE;
      },
    }),
  );
  const exit: Exit = {
    name: 'test-exit',
    afterChain: true,
    finish: (ctx) => (log.push('exit'), ctx.target.path === '/handler' ? CONTINUE : respond(200, { 'content-type': 'text/plain' }, 'from the exit')),
    challenge: () => (log.push('challenge'), respond(401, { 'content-type': 'text/plain' }, 'sign in')),
  };
  const door: Door = {
    name: 'test',
    routes: ['/*'],
    context: (req) => ({ target: { path: req.url.split('?')[0]! }, setCookies: null }) as unknown as RequestContext,
    exit: () => exit,
    fastify: async (scope) => {
      scope.get('/*', (_req, reply) => reply.code(202).send('from the handler'));
    },
  };

  before(async () => {
    app.decorateRequest('portcullis', null);
    await app.register(pipelineScope, { stages, doors: [door] });
    await app.ready();
  });
  after(() => app.close());

  test('the route has one onRequest hook, whatever the number of stages', () => {
    const routes = app.printRoutes({ includeHooks: true, commonPrefix: false });
    const hooks = routes.split('\n').filter((l) => l.includes('onRequest'));
    assert.ok(hooks.length > 0, routes);
    for (const line of hooks) assert.match(line, /\(onRequest\) \["portcullisDoor\(\)"\]$/, routes);
  });

  test('every stage in order, then the exit answers', async () => {
    log.length = 0;
    const res = await app.inject({ url: '/x' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, 'from the exit');
    assert.deepEqual(log, ['one', 'two', 'three', 'four', 'five', 'exit']);
  });

  test("the exit's CONTINUE hands the request to the route handler", async () => {
    const res = await app.inject({ url: '/handler' });
    assert.equal(res.statusCode, 202);
    assert.equal(res.body, 'from the handler');
  });

  test("a stage's answer ends the request: no later stage, no exit, no handler", async () => {
    log.length = 0;
    const res = await app.inject({ url: '/deny' });
    assert.equal(res.statusCode, 403);
    assert.equal(res.body, 'denied');
    assert.deepEqual(log, ['one', 'two', 'three']);
  });

  test('a stage that throws: the error handler answers (500), nothing after it runs', async () => {
    log.length = 0;
    const res = await app.inject({ url: '/boom' });
    assert.equal(res.statusCode, 500);
    assert.deepEqual(log, ['one', 'two', 'three', 'four']);
  });
});

describe('a custom pipeline without forward (former stage) on a real outpost', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      providers: [{ name: 'app', host: 'app.localtest', mode: 'forward_single', extra: { skip_path_regex: '^/public(/|$)' } }],
      extraConfig: { pipeline: ['auth', 'allowlist', 'access_rules', 'headers'].map((stage) => ({ stage })) },
    });
  });
  after(() => stack?.close());

  const nginx = (target: string) => {
    const host = `app.localtest:${stack.port}`;
    return httpGet(`http://127.0.0.1:${stack.port}/outpost.goauthentik.io/auth/nginx`, { headers: { host, 'x-original-url': `http://${host}${target}`, accept: 'text/html' } });
  };

  test('an allowed decision is 200 (it was 500: no stage answered it)', async () => {
    const res = await nginx('/public/page');
    assert.equal(res.status, 200);
  });

  test('a protected path is still challenged (401 for nginx)', async () => {
    const res = await nginx('/private');
    assert.equal(res.status, 401);
  });
});
