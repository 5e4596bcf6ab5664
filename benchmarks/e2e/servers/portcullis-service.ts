// Scenarios 13 and 14: Portcullis as the command line runs it (`runService`, what `portcullis
// --config FILE` calls), so that `outpost.workers` takes effect: workers: 1 serves in this
// process, workers: 2 makes this process the cluster's primary with two worker processes that
// share the listener and the embedded SQLite session store. The harness counts the CPU of the
// whole process tree (primary + workers).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { readConfig, runService } from '../../../src/server/service.js';
import { benchConfig } from '../../lib/proc.js';

const { config, port } = benchConfig<{ config: Record<string, unknown>; port: number }>();
const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-service-'));
const withStore = { ...config, outpost: { ...(config.outpost as object), session_store: { type: 'embedded', path: join(dir, 'sessions.db') } } };
const path = join(dir, 'portcullis.yaml');
writeFileSync(path, stringify(withStore), { mode: 0o600 });
const loaded = readConfig(path);
// runService installs its own SIGTERM handling (drain, then exit; the primary drains every
// worker); the harness's stop sends SIGTERM. When the harness goes away, stop the same way.
process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
// Resolves once listening: with workers, once every worker is listening.
await runService({ config: loaded.config, configPath: path, configText: loaded.text });
process.send?.({ op: 'ready', port });
