// The configuration examples in the docs are real: every YAML block with `providers:` in README.md
// and docs/forward-auth.md loads with the validator the start-up uses.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseConfig } from '../../src/config/index.js';

const root = join(import.meta.dirname, '..', '..');
const secrets = mkdtempSync(join(tmpdir(), 'portcullis-docs-'));
after(() => rmSync(secrets, { recursive: true, force: true }));

function yamlBlocks(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  return [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => /^providers:/m.test(b));
}

/** Loads a documented config: `${NAME}` from a made-up environment, `${file:…}` from real files. */
function load(block: string) {
  const env: Record<string, string> = {};
  for (const [, name] of block.matchAll(/\$\{([A-Z][A-Z0-9_]*)\}/g)) env[name!] = name!.endsWith('COOKIE_SECRET') ? 'x'.repeat(32) : `value-of-${name}`;
  // Secret files named by absolute paths (/run/secrets/…) are read from a scratch folder instead.
  const text = block.replace(/\$\{file:([^}]+)\}/g, (_m, path: string) => {
    const file = join(secrets, basename(path));
    writeFileSync(file, `secret-${basename(path)}\n`);
    return `\${file:${file}}`;
  });
  // The certificate files the examples name are illustrations: their checks are --check's (test/cli).
  return parseConfig(text, { source: 'docs example', baseDir: secrets, env, resources: false });
}

test('docs/forward-auth.md: the forward_single and forward_domain examples load', () => {
  const blocks = yamlBlocks('docs/forward-auth.md');
  const modes = blocks.map((b) => load(b).providers.map((p) => p.mode)).flat();
  assert.ok(modes.includes('forward_single'), `modes: ${modes}`);
  assert.ok(modes.includes('forward_domain'), `modes: ${modes}`);
  const domain = blocks.map(load).flatMap((c) => c.providers).find((p) => p.mode === 'forward_domain')!;
  assert.equal(domain.cookie_domain, 'example.com');
  assert.equal(domain.client_secret, 'secret-domain-client-secret');
});

test('README.md: the configuration example loads', () => {
  const blocks = yamlBlocks('README.md');
  assert.ok(blocks.length >= 1);
  for (const block of blocks) assert.ok(load(block).providers.length >= 1);
});
