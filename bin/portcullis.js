#!/usr/bin/env node
// The installed command: runs the compiled CLI (built by `npm ci` / `npm install` via `prepare`).
import '../dist/src/cli.js';
