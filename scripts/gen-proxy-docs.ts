// Writes docs/reverse-proxies/ from scripts/reverse-proxy-configs.ts (the configurations the
// end-to-end tests run). `node --import tsx scripts/gen-proxy-docs.ts [--check]`.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { docFiles } from './reverse-proxy-configs.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'reverse-proxies');
const check = process.argv.includes('--check');
let stale = 0;
mkdirSync(dir, { recursive: true });
for (const [name, content] of Object.entries(docFiles())) {
  const path = join(dir, name);
  let current: string | undefined;
  try {
    current = readFileSync(path, 'utf8');
  } catch {
    current = undefined;
  }
  if (current === content) continue;
  if (check) {
    stale++;
    console.error(`stale: docs/reverse-proxies/${name}`);
  } else {
    writeFileSync(path, content);
    console.log(`wrote docs/reverse-proxies/${name}`);
  }
}
if (stale > 0) {
  console.error('run: node --import tsx scripts/gen-proxy-docs.ts');
  process.exitCode = 1;
}
