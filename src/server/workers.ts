// How many worker processes `outpost.workers` means, and whether the session store can be shared
// by several processes.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { storeIsShared } from '../config/load.js';
import type { PortcullisConfig } from '../config/schema.js';

/**
 * The CPUs this process may use: the CPUs it may run on (affinity, as `nproc` counts them),
 * capped by the cgroup's CPU quota when there is one (a container's `--cpus`, a Kubernetes CPU
 * limit), which Node 20's `availableParallelism()` does not read.
 */
export function cpuBudget(readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): number {
  let n = availableParallelism();
  const quota = cgroupQuota(readFile);
  if (quota !== null) n = Math.min(n, Math.max(1, Math.ceil(quota)));
  return Math.max(1, n);
}

/** CPUs allowed by the cgroup (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), or null for no limit. */
function cgroupQuota(readFile: (path: string) => string): number | null {
  try {
    const [quota, period] = readFile('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    if (quota === 'max') return null;
    const q = Number(quota);
    const p = Number(period);
    if (q > 0 && p > 0) return q / p;
  } catch {
    // not cgroup v2
  }
  try {
    const q = Number(readFile('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').trim());
    const p = Number(readFile('/sys/fs/cgroup/cpu/cpu.cfs_period_us').trim());
    if (q > 0 && p > 0) return q / p;
  } catch {
    // no cgroup v1 CPU controller either
  }
  return null;
}

export { storeIsShared };

/** The number of worker processes for this config (1: no cluster, the process serves itself). */
export function workerCount(config: PortcullisConfig, budget: () => number = cpuBudget): number {
  const setting = config.outpost.workers;
  if (setting !== 'auto') return setting;
  // `auto` with a store processes cannot share stays in one process (see the check below).
  return storeIsShared(config) ? budget() : 1;
}

