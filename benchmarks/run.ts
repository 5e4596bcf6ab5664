// `npm run bench`: every stage alone (mitata), the whole proxy against its peers (wrk or
// autocannon, interleaved rounds) and the memory scenario; results under benchmarks/results/.
//
//   npm run bench                         everything with the defaults (a few minutes)
//   npm run bench:stages                  only the stage benchmarks
//   npm run bench -- --only e2e --scenarios 2,3 --duration 10 --rounds 5 --connections 64
//   npm run bench -- --only memory --sessions 10000 --memory-duration 60
//   npm run bench -- --long               10 s rounds × 5
import { parseArgs } from 'node:util';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { installCleanup } from './lib/proc.js';
import { detectGenerator } from './lib/load.js';
import { writeResults, markdown, updateDocs, type Results } from './lib/report.js';
import { SCENARIOS, runE2E } from './e2e/scenarios.js';
import { runMemory } from './e2e/memory.js';
import { runStageBenches } from './stages/stages.js';
import { summarizeProfile } from './lib/profile.js';

const HELP = `Usage: npm run bench -- [options]
  --only <list>            stages,e2e,memory (default: all three)
  --scenarios <list>       e2e scenario numbers, e.g. 2,3,5 (default: all, 1-18)
  --duration <s>           seconds per scenario per round (default 5)
  --rounds <n>             interleaved rounds (default 3)
  --warmup <s>             warm-up seconds per scenario (default 2)
  --connections <n>        connections (default 32; 15-17: N streams or connections)
  --generator <wrk|autocannon>   default: wrk when installed
  --sessions <n>           memory scenario: distinct sessions (default 10000)
  --memory-duration <s>    memory scenario: sustained load (default 60, as issue 5 asks)
  --long                   10 s × 5 rounds
  --stages <list>          only stage groups containing these words (allowlist,session,access,headers,mappings,upstream,chain,store)
  --quick                  short stage measurements
  --cpu-prof               write CPU profiles of the Portcullis processes to benchmarks/results/profiles/
  --log-level <level>      log level of the Portcullis processes, written to /dev/null (default silent)
  --report                 only rewrite the Markdown table and SVG chart from <out>/latest.json
  --docs                   also write the figures into docs/benchmarks.md and the README (between their markers)
  --out <dir>              results directory (default benchmarks/results)`;

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    scenarios: { type: 'string' },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    generator: { type: 'string' },
    sessions: { type: 'string' },
    'memory-duration': { type: 'string' },
    long: { type: 'boolean', default: false },
    stages: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'log-level': { type: 'string' },
    out: { type: 'string' },
    report: { type: 'boolean', default: false },
    docs: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}

const list = (v: string | undefined) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined);
const num = (v: string | undefined, d: number, min = 1) => {
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new Error(`not a number ≥ ${min}: ${v}`);
  return n;
};
const only = new Set(list(values.only) ?? ['stages', 'e2e', 'memory']);
for (const o of only) if (!['stages', 'e2e', 'memory'].includes(o)) throw new Error(`--only: unknown part ${o}`);
const scenarios = (list(values.scenarios) ?? SCENARIOS.map((s) => String(s.id))).map(Number);
const long = values.long;
const settings = {
  portcullisLogLevel: values['log-level'] ?? 'silent',
  durationSec: num(values.duration, long ? 10 : 5),
  rounds: num(values.rounds, long ? 5 : 3),
  warmupSec: num(values.warmup, 2, 0),
  connections: num(values.connections, 32),
  sessions: num(values.sessions, 10_000),
  memoryDurationSec: num(values['memory-duration'], 60),
};
const outDir = values.out ?? fileURLToPath(new URL('./results/', import.meta.url));
const generator = detectGenerator(values.generator);

installCleanup();
if (values.report) {
  const saved = JSON.parse(readFileSync(`${outDir}/latest.json`, 'utf8')) as Results;
  const paths = writeResults(outDir, saved);
  console.log(markdown(saved));
  console.log(`wrote ${paths.md}, ${paths.json}, ${paths.svg}`);
  if (values.docs) console.log(`wrote ${updateDocs(fileURLToPath(new URL('..', import.meta.url)), saved).join(', ')}`);
  process.exit(0);
}
const t0 = Date.now();
const log = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${line}`);

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

const previous: Partial<Results> = (() => {
  const p = `${outDir}/latest.json`;
  try {
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Results) : {};
  } catch {
    return {};
  }
})();

/** The profiles this run wrote (named CPU.<date>.<time>.<pid>.…), each with the scenarios its process served. */
function profilesOf(e2e: NonNullable<Results['e2e']>, dir: string, since: number, date: string): NonNullable<Results['profiles']> {
  if (!existsSync(dir)) return [];
  const out: NonNullable<Results['profiles']> = [];
  for (const name of readdirSync(dir).sort()) {
    const path = `${dir}/${name}`;
    if (!name.endsWith('.cpuprofile') || statSync(path).mtimeMs < since) continue;
    const pid = Number(name.split('.')[3]);
    const served = e2e.filter((s) => s.pid === pid);
    if (served.length === 0) continue;
    // Only the measured rounds: start-up, logins and the other scenarios' rounds are left out.
    const summary = summarizeProfile(path, served.flatMap((s) => s.windowsUs ?? []));
    // The module loader's thread (same pid) runs no Portcullis code under load.
    if (summary.busyMs < 1 || summary.portcullis.length === 0) continue;
    out.push({ date, scenarios: served.map((s) => s.id), label: served.map((s) => `${s.id} ${s.label}`).join('; '), summary });
  }
  return out;
}

const results: Results = {
  date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  machine: { nproc: os.availableParallelism?.() ?? os.cpus().length, cpu: cpuModel(), node: process.version, os: `${os.type()} ${os.release()}`, generator },
  settings: { ...settings, scenarios },
  // Parts not run this time are kept from the previous results file.
  stages: previous.stages,
  e2e: previous.e2e,
  memory: previous.memory,
  profiles: previous.profiles,
  ran: { ...previous.ran },
};

try {
  log(`Portcullis benchmarks: ${[...only].join(', ')}; ${results.machine.nproc} × ${results.machine.cpu}, Node ${process.version}, ${generator}`);
  if (only.has('stages')) {
    log('stages (mitata):');
    results.stages = await runStageBenches({ quick: values.quick, filter: list(values.stages), log });
    results.ran!.stages = results.date;
    writeResults(outDir, results); // a later part that fails does not lose this one
  }
  if (only.has('e2e')) {
    log(`end to end: scenarios ${scenarios.join(',')}, ${settings.rounds} rounds × ${settings.durationSec}s, ${settings.connections} connections`);
    results.e2e = await runE2E({
      scenarios,
      rounds: settings.rounds,
      durationSec: settings.durationSec,
      warmupSec: settings.warmupSec,
      connections: settings.connections,
      generator,
      portcullisLogLevel: values['log-level'],
      portcullisNodeArgs: values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${outDir}/profiles`] : undefined,
      log,
    });
    results.ran!.e2e = results.date;
    if (values['cpu-prof']) results.profiles = profilesOf(results.e2e, `${outDir}/profiles`, t0, results.date);
    writeResults(outDir, results);
  }
  if (only.has('memory')) {
    log(`memory: ${settings.sessions} sessions, ${settings.memoryDurationSec}s sustained load`);
    results.memory = await runMemory({ sessions: settings.sessions, durationSec: settings.memoryDurationSec, connections: settings.connections, concurrency: 8, generator, log });
    results.ran!.memory = results.date;
  }
  const paths = writeResults(outDir, results);
  console.log('\n' + markdown(results));
  log(`wrote ${paths.md}, ${paths.json}${results.e2e ? `, ${paths.svg}` : ''}`);
  if (values.docs) log(`wrote ${updateDocs(fileURLToPath(new URL('..', import.meta.url)), results).join(', ')}`);
  process.exit(0);
} catch (err) {
  console.error(`benchmark failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
}
