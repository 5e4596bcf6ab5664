// The package's public entry point, as a third-party stage imports it: `from 'portcullis'`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

test("'portcullis' exports what a stage author and an embedding program need", async () => {
  const api = (await import('portcullis')) as Record<string, unknown>;
  for (const name of ['defineStage', 'CONTINUE', 'respond', 'STAGE_OPTIONS', 'LOGGER', 'CONFIG', 'PROVIDERS', 'SESSION_STORE', 'page', 'StageRegistry', 'runStages', 'Outpost', 'parseConfig', 'loadConfigFile', 'ConfigError']) {
    assert.ok(api[name] !== undefined, `missing export ${name}`);
  }
  const def = (api.defineStage as (d: unknown) => { name: string })({ name: 'x', create: () => ({ name: 'x', run: () => api.CONTINUE }) });
  assert.equal(def.name, 'x');
});
