// The package's public entry points: 'portcullis' (the stage contract, as a third-party stage
// imports it) and 'portcullis/embed' (programs that embed the outpost). The built package's
// surface, .d.ts included, is tested in test/examples/.
import { test } from 'node:test';
import assert from 'node:assert/strict';

test("'portcullis' exports the stage contract, and no internal token or module", async () => {
  const api = (await import('portcullis')) as Record<string, unknown>;
  for (const name of ['defineStage', 'CONTINUE', 'CHALLENGE', 'CONTEXT_FIELDS', 'NO_OPTIONS', 'respond', 'STAGE_OPTIONS', 'LOGGER', 'PROVIDER_VIEWS', 'SESSION_READER', 'VERSION', 'page', 'escapeHtml', 'StageRegistry', 'runStages', 'VERSION_STRING']) {
    assert.ok(api[name] !== undefined, `missing export ${name}`);
  }
  // These resolve secrets (or the store's writes), or belong to the embedding API.
  for (const name of ['CONFIG', 'PROVIDERS', 'SESSION_STORE', 'AUTH_EVENTS', 'WEBSOCKETS', 'defineBuiltInStage', 'builtInDeps', 'runtimeOf', 'Outpost', 'parseConfig']) {
    assert.equal(api[name], undefined, `${name} is not in the stage contract`);
  }
  const def = (api.defineStage as (d: unknown) => { name: string })({ name: 'x', create: () => ({ name: 'x', run: () => api.CONTINUE }) });
  assert.equal(def.name, 'x');
});

test("'portcullis/embed' exports the outpost and the config loader, beside the contract", async () => {
  const api = (await import('portcullis/embed')) as Record<string, unknown>;
  for (const name of ['Outpost', 'parseConfig', 'loadConfigFile', 'ConfigError', 'defineStage', 'StageRegistry']) assert.ok(api[name] !== undefined, `missing export ${name}`);
  assert.equal(api.CONFIG, undefined);
});
