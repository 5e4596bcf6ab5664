// The stage registry as the config names stages: a built-in name, else a module — a path relative
// to the config file, or a package — whose default export is a stage definition. Failures stop the
// start with an error naming pipeline[i].stage and its line.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { parseConfig, ConfigError } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { EmbeddedSessionStore } from '../../src/sessions/embedded-store.js';
import { quietLogger } from '../support/stack.js';
import type { Logger } from '../../src/pipeline/logger.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-registry-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const silent = quietLogger() as unknown as Logger;

// A stage module in a folder beside the config file, importing the contract by its source path.
mkdirSync(join(dir, 'stages'));
writeFileSync(
  join(dir, 'stages', 'marker.ts'),
  `import { CONTINUE, defineStage } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '../../src/index.ts')).href)};
export default defineStage({ name: 'marker', create: () => ({ name: 'marker', run: () => CONTINUE }) });
`,
);

function configText(stage: string): string {
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
    pipeline: [{ stage: 'auth' }, { stage }, ...['allowlist', 'access_rules', 'headers'].map((s) => ({ stage: s }))],
  });
}

async function create(stage: string): Promise<Outpost> {
  const config = parseConfig(configText(stage), { source: 'registry.yaml', baseDir: dir, env: {} });
  const store = new EmbeddedSessionStore({ path: null, keys: new Map(), log: silent });
  try {
    const outpost = await Outpost.create(config, { logger: quietLogger(), store });
    await outpost.close();
    return outpost;
  } finally {
    await store.close();
  }
}

async function startError(stage: string): Promise<ConfigError> {
  try {
    await create(stage);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the start to fail');
}

const stageLine = (stage: string) => {
  const text = configText(stage);
  return text.slice(0, text.indexOf(`stage: ${stage}`)).split('\n').length;
};

test('a module path relative to the config file resolves against its directory', async () => {
  const outpost = await create('./stages/marker.ts');
  assert.equal(outpost.stages[1]!.stage.name, 'marker');
  assert.equal(outpost.stages[1]!.definition.name, 'marker');
});

test('an unknown stage name fails with an error listing the built-in stages, at its line', async () => {
  const err = await startError('client-ip-allowlst');
  assert.equal(err.issues.length, 1);
  assert.equal(err.issues[0]!.code, 'config.unknown_stage');
  assert.equal(err.issues[0]!.field, 'pipeline[1].stage');
  assert.equal(err.issues[0]!.line, stageLine('client-ip-allowlst'));
  assert.match(
    err.issues[0]!.message,
    /^stage "client-ip-allowlst" is neither a built-in stage \(auth, allowlist, access_rules, headers\) nor a loadable module: /,
  );
});

test('a module whose default export is not a stage definition is refused', async () => {
  const err = await startError('node:path');
  assert.equal(err.issues[0]!.field, 'pipeline[1].stage');
  assert.match(err.issues[0]!.message, /does not default-export a stage definition/);
});

test('a relative path that does not exist is reported as such', async () => {
  const err = await startError('./no-such-stage.ts');
  assert.equal(err.issues[0]!.field, 'pipeline[1].stage');
  assert.match(err.issues[0]!.message, /nor a loadable module: .*no-such-stage/);
});
