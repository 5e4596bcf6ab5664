#!/usr/bin/env node
// The installed command: runs the compiled CLI. dist/ is in the packed tarball (`prepack`) and is
// compiled by `prepare` in a checkout (`npm ci`, also with --omit=dev).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('portcullis: dist/src/cli.js is missing: run `npm ci` (or `npm run build`) in this checkout');
  process.exit(70);
}
await import(cli.href);
