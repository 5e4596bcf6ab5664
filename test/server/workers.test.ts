// outpost.workers: what `auto` resolves to (CPU affinity capped by the cgroup's quota), and the
// range of the setting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { parseConfig } from '../../src/config/index.js';
import { cpuBudget, workerCount } from '../../src/server/workers.js';

const yaml = (outpost: string) => `outpost:
${outpost}
providers:
  - name: app
    issuer: https://idp.example.com/
    client_id: app
    client_secret: secret
    cookie_secret: ${'x'.repeat(32)}
    external_host: https://app.example.com
    internal_host: http://127.0.0.1:8080
`;

const files = (map: Record<string, string>) => (path: string) => {
  const text = map[path];
  if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
  return text;
};

test('auto: the CPUs this process may run on, capped by a cgroup v2 or v1 CPU quota', () => {
  const cpus = availableParallelism();
  assert.equal(cpuBudget(files({})), cpus, 'no cgroup files: every CPU');
  assert.equal(cpuBudget(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), cpus, 'v2 without a limit');
  assert.equal(cpuBudget(files({ '/sys/fs/cgroup/cpu.max': '50000 100000\n' })), 1, 'half a CPU is one worker');
  assert.equal(cpuBudget(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' })), Math.min(cpus, 2), '1.5 CPUs round up');
  assert.equal(cpuBudget(files({ '/sys/fs/cgroup/cpu.max': `${100000 * (cpus + 8)} 100000\n` })), cpus, 'a quota above the CPUs present changes nothing');
  assert.equal(cpuBudget(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), 1, 'cgroup v1');
  assert.equal(cpuBudget(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), cpus, 'v1 without a limit');
});

test('workers: auto by default; a number as given; both built-in stores can be shared by workers', () => {
  const redis = "  session_store: { type: redis, url: 'redis://127.0.0.1:6379' }";
  assert.equal(parseConfig(yaml(redis)).outpost.workers, 'auto');
  assert.equal(workerCount(parseConfig(yaml(redis)), () => 6), 6);
  assert.equal(workerCount(parseConfig(yaml(`${redis}\n  workers: 3`)), () => 6), 3);
  assert.equal(workerCount(parseConfig(yaml('  workers: auto')), () => 6), 6, 'the embedded SQLite store is shared by processes');
  assert.equal(workerCount(parseConfig(yaml('  workers: 4')), () => 6), 4);
  assert.equal(workerCount(parseConfig(yaml('  workers: 1')), () => 6), 1);
});

test('workers must be auto or a number from 1 to 256', () => {
  assert.throws(() => parseConfig(yaml('  workers: 0')), /outpost\.workers/);
  assert.throws(() => parseConfig(yaml('  workers: 257')), /outpost\.workers/);
  assert.throws(() => parseConfig(yaml('  workers: many')), /outpost\.workers/);
});
