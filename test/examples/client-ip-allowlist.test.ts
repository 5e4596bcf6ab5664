// The example third-party stage (examples/client-ip-allowlist): loaded from the config's
// `pipeline:` as a module, options validated at start, 403 outside the allowed CIDRs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startStack, quietLogger, type Stack } from '../support/stack.js';
import { httpGet } from '../support/browserless.js';
import { parseConfig, ConfigError } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { EmbeddedSessionStore } from '../../src/sessions/embedded-store.js';
import type { Logger } from '../../src/pipeline/logger.js';

const here = dirname(fileURLToPath(import.meta.url));
const STAGE_MODULE = resolve(here, '../../examples/client-ip-allowlist/index.ts');
/** The same module, relative to a config file in this directory. */
const STAGE_RELATIVE = '../../examples/client-ip-allowlist/index.ts';

const pipeline = (stage: string, options: unknown) => [
  { stage: 'auth' },
  { stage, options },
  { stage: 'allowlist' },
  { stage: 'mappings' },
  { stage: 'headers' },
];

const stacks: Stack[] = [];
after(async () => {
  for (const s of stacks) await s.close();
});

async function stackWith(options: unknown, outpost?: Record<string, unknown>): Promise<Stack> {
  const stack = await startStack({
    providers: [{ name: 'app', host: 'app.localtest', extra: { skip_path_regex: '^/public/' } }],
    extraConfig: { pipeline: pipeline(STAGE_MODULE, options) },
    outpost,
  });
  stacks.push(stack);
  return stack;
}

test('the stage loads from its module path, runs right after auth, and lets allowed clients through', async () => {
  const stack = await stackWith({ allow: ['127.0.0.1/32'] });
  assert.deepEqual(
    stack.outpost.stages.map((s) => s.stage.name),
    ['auth', 'client-ip-allowlist', 'allowlist', 'mappings', 'headers'],
  );
  const res = await httpGet(stack.url('app.localtest', '/public/page?x=1'));
  assert.equal(res.status, 200);
  assert.equal((JSON.parse(res.body) as { url: string }).url, '/public/page?x=1');
  // A protected path is not let through by this stage alone: the allowlist still challenges.
  const protectedPath = await httpGet(stack.url('app.localtest', '/reports'));
  assert.equal(protectedPath.status, 302);
  assert.match(String(protectedPath.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/);
});

test('a client outside the allowed CIDRs gets 403, even on an allowlisted path', async () => {
  const stack = await stackWith({ allow: ['10.0.0.0/8'], message: 'Office network only.' });
  const html = await httpGet(stack.url('app.localtest', '/public/page'));
  assert.equal(html.status, 403);
  assert.match(String(html.headers['content-type']), /^text\/html/);
  assert.match(html.body, /Office network only\./);
  assert.match(html.body, /client_ip\.denied/);

  const json = await httpGet(stack.url('app.localtest', '/public/page'), { headers: { accept: 'application/json' } });
  assert.equal(json.status, 403);
  const body = JSON.parse(json.body) as { error: string; message: string; request_id: string };
  assert.equal(body.error, 'client_ip.denied');
  assert.equal(body.message, 'Office network only.');
  assert.ok(body.request_id.length > 0);

  // X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
  const spoofed = await httpGet(stack.url('app.localtest', '/public/page'), { headers: { 'x-forwarded-for': '10.1.2.3' } });
  assert.equal(spoofed.status, 403);
});

test('behind a trusted proxy, the forwarded client address is the one checked', async () => {
  const stack = await stackWith({ allow: ['10.0.0.0/8'] }, { trusted_proxies: ['127.0.0.1'] });
  const inside = await httpGet(stack.url('app.localtest', '/public/page'), { headers: { 'x-forwarded-for': '10.1.2.3' } });
  assert.equal(inside.status, 200);
  const outside = await httpGet(stack.url('app.localtest', '/public/page'), { headers: { 'x-forwarded-for': '192.0.2.7' } });
  assert.equal(outside.status, 403);
  assert.match(outside.body, /not allowed to reach this application/);
});

// ---------------------------------------------------------------------------------------------
// Start-up without servers: Outpost.create builds the chain (the IdP is never contacted).
// ---------------------------------------------------------------------------------------------

const silent = quietLogger() as unknown as Logger;

function configWith(stage: string, options: unknown): string {
  return stringify({
    outpost: { listeners: { http: '127.0.0.1:0', https: null }, log_level: 'silent' },
    providers: [
      {
        name: 'app',
        issuer: 'http://127.0.0.1:9/application/o/app/',
        client_id: 'app',
        client_secret: 'secret',
        cookie_secret: '0123456789abcdef0123456789abcdef',
        external_host: 'http://app.localtest:9000',
        internal_host: 'http://127.0.0.1:9',
      },
    ],
    pipeline: pipeline(stage, options),
  });
}

/** Outpost.create for a config file living in this directory; closes what it opened. */
async function create(stage: string, options: unknown): Promise<Outpost> {
  const config = parseConfig(configWith(stage, options), { source: 'example.yaml', baseDir: here, env: {} });
  const store = new EmbeddedSessionStore({ path: null, keys: new Map(), log: silent });
  try {
    const outpost = await Outpost.create(config, { logger: quietLogger(), store });
    await outpost.close();
    return outpost;
  } finally {
    await store.close();
  }
}

async function startError(stage: string, options: unknown): Promise<ConfigError> {
  try {
    await create(stage, options);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the start to fail');
}

test('a module path relative to the config file resolves against its directory', async () => {
  const outpost = await create(STAGE_RELATIVE, { allow: ['::1', '127.0.0.0/8'] });
  assert.equal(outpost.stages[1]!.stage.name, 'client-ip-allowlist');
  assert.equal(outpost.stages[1]!.definition.name, 'client-ip-allowlist');
});

test('options of the wrong type fail at start, naming pipeline[1].options', async () => {
  const err = await startError(STAGE_RELATIVE, { allow: 5 });
  assert.equal(err.issues.length, 1);
  assert.equal(err.issues[0]!.code, 'config.invalid_stage_options');
  assert.equal(err.issues[0]!.field, 'pipeline[1].options.allow');
  assert.match(err.issues[0]!.message, /^client-ip-allowlist: must be array/);
  assert.match(err.message, /pipeline\[1\]\.options\.allow/);
});

test('an unknown option fails at start, naming it', async () => {
  const err = await startError(STAGE_RELATIVE, { allow: ['10.0.0.0/8'], allowed: ['192.168.0.0/16'] });
  assert.equal(err.issues.length, 1);
  assert.equal(err.issues[0]!.field, 'pipeline[1].options');
  assert.match(err.issues[0]!.message, /must NOT have additional properties \("allowed"\)/);
});

test('missing or empty allow lists fail at start', async () => {
  const missing = await startError(STAGE_RELATIVE, { message: 'hi' });
  assert.equal(missing.issues[0]!.field, 'pipeline[1].options');
  assert.match(missing.issues[0]!.message, /must have required property 'allow'/);
  const empty = await startError(STAGE_RELATIVE, { allow: [] });
  assert.equal(empty.issues[0]!.field, 'pipeline[1].options.allow');
});

test('an address that is not a CIDR stops the start with the offending value', async () => {
  await assert.rejects(create(STAGE_RELATIVE, { allow: ['10.0.0.0/8', 'office-lan'] }), /client-ip-allowlist: invalid address or CIDR in "allow": .*office-lan/);
});

test('an unknown stage name fails with an error listing the built-in stages', async () => {
  const err = await startError('client-ip-allowlst', { allow: ['10.0.0.0/8'] });
  assert.equal(err.issues.length, 1);
  assert.equal(err.issues[0]!.code, 'config.unknown_stage');
  assert.equal(err.issues[0]!.field, 'pipeline[1].stage');
  assert.match(
    err.issues[0]!.message,
    /^stage "client-ip-allowlst" is neither a built-in stage \(auth, allowlist, mappings, headers\) nor a loadable module: /,
  );
});

test('a module whose default export is not a stage definition is refused', async () => {
  const err = await startError('node:path', {});
  assert.equal(err.issues[0]!.field, 'pipeline[1].stage');
  assert.match(err.issues[0]!.message, /does not default-export a stage definition/);
});

test('a relative path that does not exist is reported as such', async () => {
  const err = await startError('./no-such-stage.ts', {});
  assert.equal(err.issues[0]!.field, 'pipeline[1].stage');
  assert.match(err.issues[0]!.message, /nor a loadable module: .*no-such-stage/);
});
