// buildChain at config load: the chain it refuses (a required stage left out, a former stage
// listed in the middle) and the one it accepts; runStages and runToExit, the one loop every
// request runs (Fastify's hook, benchmarks), on stages and exits made here.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { parseConfig, ConfigError } from '../../src/config/index.js';
import { CHALLENGE, CONTINUE, respond, type RequestContext, type Stage, type StageOutcome } from '../../src/pipeline/contract.js';
import { runStages } from '../../src/pipeline/chain.js';
import { runToExit, type Exit } from '../../src/pipeline/exits.js';
import { Outpost } from '../../src/server/outpost.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-chain-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function config(pipeline: string[] | undefined, accessRules = false) {
  return parseConfig(
    stringify({
      outpost: { listeners: { http: null, https: null }, log_level: 'silent' },
      providers: [
        {
          name: 'app',
          issuer: 'http://127.0.0.1:1/no-idp',
          client_id: 'app',
          client_secret: 'secret',
          cookie_secret: '0123456789abcdef0123456789abcdef',
          external_host: 'https://app.localtest',
          internal_host: 'http://127.0.0.1:9',
          ...(accessRules ? { access_rules: [{ name: 'admins', paths: ['^/admin'], when: '"admins" in claims.groups' }] } : {}),
        },
      ],
      ...(pipeline ? { pipeline: pipeline.map((stage) => ({ stage })) } : {}),
    }),
    { source: 'chain.yaml', baseDir: dir },
  );
}

async function build(pipeline: string[] | undefined, accessRules = false): Promise<Outpost> {
  return Outpost.create(config(pipeline, accessRules), { logger: pino({ level: 'silent' }), checkOnly: true });
}

async function refused(pipeline: string[], accessRules = false): Promise<ConfigError> {
  try {
    const o = await build(pipeline, accessRules);
    await o.close();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail(`expected the pipeline ${pipeline.join(', ')} to be refused`);
}

describe('buildChain refuses, at config load', () => {
  test('a chain without the access-rules stage while access_rules are configured, naming the field', async () => {
    const err = await refused(['auth', 'allowlist', 'headers'], true);
    assert.equal(err.issues.length, 1);
    assert.equal(err.issues[0]!.code, 'config.pipeline_incomplete');
    assert.equal(err.issues[0]!.field, 'pipeline');
    assert.match(err.issues[0]!.message, /"access_rules".*providers\[0\]\.access_rules/);
  });

  test('a chain without auth, allowlist or headers', async () => {
    for (const missing of ['auth', 'allowlist', 'headers']) {
      const err = await refused(['auth', 'allowlist', 'access_rules', 'headers'].filter((s) => s !== missing));
      assert.ok(err.issues.some((i) => i.code === 'config.pipeline_incomplete' && i.message.includes(`"${missing}"`)), missing);
    }
  });

  test('auth not first', async () => {
    const err = await refused(['allowlist', 'auth', 'headers']);
    assert.equal(err.issues[0]!.code, 'config.pipeline_order');
  });

  test('forward or upstream (exits now) before a stage, naming the entry', async () => {
    const err = await refused(['auth', 'allowlist', 'upstream', 'headers']);
    assert.equal(err.issues[0]!.code, 'config.pipeline_order');
    assert.equal(err.issues[0]!.field, 'pipeline[2].stage');
    assert.match(err.issues[0]!.message, /exit/);
  });
});

describe('buildChain accepts', () => {
  test('the default chain: the four deciding stages, no exit among them', async () => {
    const o = await build(undefined, true);
    try {
      assert.deepEqual(o.stages.map((b) => b.stage.name), ['auth', 'allowlist', 'access_rules', 'headers']);
      assert.deepEqual([...o.exits.keys()].sort(), ['forward', 'login', 'upstream']);
    } finally {
      await o.close();
    }
  });

  test('without the access-rules stage when no provider has access rules', async () => {
    const o = await build(['auth', 'allowlist', 'headers']);
    try {
      assert.deepEqual(o.stages.map((b) => b.stage.name), ['auth', 'allowlist', 'headers']);
    } finally {
      await o.close();
    }
  });

  test('an older pipeline that lists forward and upstream last: they are dropped (exits always run); its "mappings" is access_rules', async () => {
    const o = await build(['auth', 'allowlist', 'mappings', 'headers', 'forward', 'upstream'], true);
    try {
      assert.deepEqual(o.stages.map((b) => b.stage.name), ['auth', 'allowlist', 'access_rules', 'headers']);
    } finally {
      await o.close();
    }
  });
});

/** A stage that notes its run in `log` and answers `out` (a value or a function of the context). */
function stage(name: string, log: string[], out: StageOutcome | Promise<StageOutcome> | (() => StageOutcome | Promise<StageOutcome>) = CONTINUE): Stage {
  return { name, run: () => (log.push(name), typeof out === 'function' ? out() : out) };
}

function exit(log: string[], afterChain = true, out: StageOutcome = respond(200, {}, 'exit')): Exit {
  return { name: 'test-exit', afterChain, finish: () => (log.push('exit'), out), challenge: () => (log.push('challenge'), respond(401)) };
}

const ctx = {} as RequestContext;

describe('runStages / runToExit: one loop, in order', () => {
  test('every stage in order, then the exit; synchronous stages give a synchronous answer', () => {
    const log: string[] = [];
    const out = runToExit([stage('a', log), stage('b', log), stage('c', log)], exit(log), ctx);
    assert.ok(!(out instanceof Promise));
    assert.deepEqual(log, ['a', 'b', 'c', 'exit']);
    assert.equal((out as { status: number }).status, 200);
  });

  test("a stage's answer ends the run: no later stage, no exit", () => {
    const log: string[] = [];
    const out = runToExit([stage('a', log), stage('b', log, respond(403)), stage('c', log)], exit(log), ctx);
    assert.deepEqual(log, ['a', 'b']);
    assert.equal((out as { status: number }).status, 403);
  });

  test('an asynchronous stage: the rest runs after it, in order', async () => {
    const log: string[] = [];
    const out = runToExit([stage('a', log, () => Promise.resolve(CONTINUE)), stage('b', log), stage('c', log, () => Promise.resolve({ kind: 'continue' as const }))], exit(log), ctx);
    assert.ok(out instanceof Promise);
    assert.equal(((await out) as { status: number }).status, 200);
    assert.deepEqual(log, ['a', 'b', 'c', 'exit']);
  });

  test('an asynchronous answer ends the run', async () => {
    const log: string[] = [];
    const out = await runToExit([stage('a', log, () => Promise.resolve(respond(401))), stage('b', log)], exit(log), ctx);
    assert.deepEqual(log, ['a']);
    assert.equal((out as { status: number }).status, 401);
  });

  test("a stage's CHALLENGE is answered by the exit's challenge (its caller's form); later stages do not run", () => {
    const log: string[] = [];
    const out = runToExit([stage('a', log, CHALLENGE), stage('b', log)], exit(log), ctx);
    assert.deepEqual(log, ['a', 'challenge']);
    assert.equal((out as { status: number }).status, 401);
  });

  test('an exit that does not run after the chain (login endpoints) skips every stage', () => {
    const log: string[] = [];
    runToExit([stage('a', log, respond(403))], exit(log, false), ctx);
    assert.deepEqual(log, ['exit']);
  });

  test('runStages alone returns CONTINUE when every stage goes on', () => {
    const log: string[] = [];
    assert.equal(runStages([stage('a', log), stage('b', log)], ctx), CONTINUE);
    assert.deepEqual(log, ['a', 'b']);
  });
});
