// Scenarios 3, 4, 5, 15-17 (the HTTPS listener) and the memory scenario: Portcullis built from a YAML config through the
// real loader and `Outpost.create`, exactly as the CLI does, listening on loopback.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { pino } from 'pino';
import { parseConfig } from '../../../src/config/index.js';
import { Outpost } from '../../../src/server/outpost.js';
import { benchConfig, childMain } from '../../lib/proc.js';

const { config, logLevel } = benchConfig<{ config: Record<string, unknown>; logLevel?: string }>();
const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
// No cap on sessions per user: the memory scenario logs the one test user in 10,000 times.
const withJournal = { ...config, outpost: { ...(config.outpost as object), session_store: { type: 'embedded', path: join(dir, 'sessions.db'), max_sessions_per_user: 0 } } };
const parsed = parseConfig(stringify(withJournal), { source: 'bench config', baseDir: dir });
// Silent by default, like the other servers; `--log-level info` measures production logging (to /dev/null).
const logger = logLevel && logLevel !== 'silent' ? pino({ level: logLevel }, pino.destination({ dest: '/dev/null', sync: true })) : pino({ level: 'silent' });
const outpost = await Outpost.create(parsed, { logger });
const child = childMain(
  {
    sessions: async () => ({ sessions: await outpost.store.size() }),
    gc: () => {
      (globalThis as { gc?: () => void }).gc?.();
      return {};
    },
    // The live heap after a full collection (needs --expose-gc): what is retained, not garbage.
    heap: () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (!gc) return { heapUsed: -1 };
      gc();
      gc();
      return { heapUsed: process.memoryUsage().heapUsed };
    },
  },
  async () => {
    await outpost.close();
    rmSync(dir, { recursive: true, force: true });
  },
);
// Discovery before the first login, so that login timing does not include it.
await Promise.all(outpost.providers.all.map((p) => p.oidc.ready()));
const addr = await outpost.listen();
child.ready({ port: addr.http?.port, httpsPort: addr.https?.port });
