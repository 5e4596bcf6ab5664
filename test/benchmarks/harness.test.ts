// Smoke test of the benchmark harness (not a benchmark: nothing about speed is asserted). The
// end-to-end harness starts its processes, logs in through the OIDC flow, runs one short
// scenario and cleans up; one stage benchmark runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runE2E, type ScenarioResult } from '../../benchmarks/e2e/scenarios.js';
import { runStageBenches } from '../../benchmarks/stages/stages.js';
import { detectGenerator, parseH2load } from '../../benchmarks/lib/load.js';
import { cpuSeconds } from '../../benchmarks/lib/proc.js';
import { spawn } from 'node:child_process';
import { markdown, svgChart } from '../../benchmarks/lib/report.js';
import { summarizeProfile, profileMarkdown } from '../../benchmarks/lib/profile.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const quiet = () => undefined;

test('one authenticated end-to-end scenario completes and is reported', { timeout: 60_000 }, async () => {
  const results = await runE2E({ scenarios: [3], rounds: 1, durationSec: 1, warmupSec: 0, connections: 4, generator: detectGenerator(), log: quiet });
  assert.equal(results.length, 1);
  const r = results[0]!;
  assert.equal(r.status, 'ok');
  assert.equal(r.rounds.length, 1);
  assert.ok(r.rps! > 0);
  assert.ok(r.peakRssMb! > 0);
  assert.ok(r.cpuUsPerReq! > 0 && r.cpuUsPerReq! < 1e6, `CPU per request ${r.cpuUsPerReq}`);
  const report = { date: 'now', machine: { nproc: 1, cpu: 'cpu', node: process.version, os: 'os', generator: 'wrk' }, settings: { rounds: 1, connections: 4, durationSec: 1 }, e2e: results };
  assert.match(markdown(report), /Portcullis proxy, authenticated/);
  assert.match(markdown(report), /CPU µs\/req/);
  assert.match(svgChart(report), /^<svg[\s\S]*<\/svg>\n$/);
});

test('a stage benchmark runs', { timeout: 60_000 }, async () => {
  const rows = await runStageBenches({ quick: true, filter: ['upstream'], log: quiet });
  assert.ok(rows.length >= 1);
  for (const row of rows) assert.ok(row.nsPerOp > 0 && row.opsPerSec > 0);
});

test('CPU time counts the whole process tree: an idle parent whose child spins', { timeout: 30_000 }, async () => {
  // The parent only waits; its child burns 0.6 s of CPU and stays alive until told to go.
  // CPU time, not wall time: on a loaded machine 600 ms of wall clock can be far less CPU.
  const spin = "const c=()=>{const u=process.cpuUsage();return (u.user+u.system)/1000};while(c()<600){}process.stdout.write('x');setInterval(()=>{},1000)";
  const parent = spawn(process.execPath, ['-e', `const c=require('child_process').spawn(process.execPath,['-e',${JSON.stringify(spin)}],{stdio:['ignore','inherit','ignore']});process.on('SIGTERM',()=>{c.kill('SIGKILL');process.exit(0)})`], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise<void>((resolve) => parent.stdout!.once('data', () => resolve()));
    const cpu = cpuSeconds(parent.pid!);
    assert.ok(cpu >= 0.4, `the child's CPU is counted under the parent: ${cpu} s`);
  } finally {
    parent.kill('SIGTERM');
  }
});

test('the peers a user would pick instead run: Go ReverseProxy with cookie sessions and Apache + mod_auth_openidc', { timeout: 120_000 }, async () => {
  const results = await runE2E({ scenarios: [10, 11, 12], rounds: 1, durationSec: 1, warmupSec: 0, connections: 4, generator: detectGenerator(), log: quiet });
  assert.deepEqual(results.map((r) => [r.id, r.status]), [[10, 'ok'], [11, 'ok'], [12, 'ok']]);
  for (const r of results) assert.ok(r.rps! > 0 && r.cpuUsPerReq! > 0, `${r.key}: ${r.rps} req/s, ${r.cpuUsPerReq} µs`);
});

test('workers: 1 and 2 (the CLI path, shared SQLite store) run, and CPU counts the workers', { timeout: 120_000 }, async () => {
  const results = await runE2E({ scenarios: [13, 14], rounds: 1, durationSec: 1, warmupSec: 0, connections: 4, generator: detectGenerator(), log: quiet });
  assert.deepEqual(results.map((r) => [r.id, r.status]), [[13, 'ok'], [14, 'ok']]);
  for (const r of results) assert.ok(r.rps! > 0 && r.cpuUsPerReq! > 0, `${r.key}: ${r.rps} req/s, ${r.cpuUsPerReq} µs`);
  // The primary and two workers: three Node processes' resident memory, against one.
  const [one, two] = results as [ScenarioResult, ScenarioResult];
  assert.ok(two.peakRssMb! > one.peakRssMb! * 1.8, `workers: 2 peak RSS ${two.peakRssMb} MB summed over the tree, workers: 1 ${one.peakRssMb} MB`);
});

test('HTTP/2 (1 connection × N streams, N × 1) and HTTP/1.1 over TLS run with h2load; requests are counted', { timeout: 120_000 }, async () => {
  const results = await runE2E({ scenarios: [15, 16, 17], rounds: 1, durationSec: 1, warmupSec: 0, connections: 4, generator: detectGenerator(), log: quiet });
  assert.deepEqual(results.map((r) => [r.id, r.status]), [[15, 'ok'], [16, 'ok'], [17, 'ok']]);
  for (const r of results) {
    assert.ok(r.rps! > 0 && r.rounds[0]!.requests > 0 && r.cpuUsPerReq! > 0, `${r.key}: ${r.rps} req/s, ${r.cpuUsPerReq} µs`);
    assert.equal(r.errors, 0);
  }
  assert.match(results[0]!.label, /1 connection × 4 streams/);
  assert.match(markdown({ date: 'now', machine: { nproc: 1, cpu: 'cpu', node: process.version, os: 'os', generator: 'wrk' }, settings: { rounds: 1, connections: 4, durationSec: 1 }, e2e: results }), /HTTP\/2, 1 connection × N streams \(15\) against HTTP\/1\.1, N connections \(17\) \| [\d.]+×/);
});

test('a missing tool makes a visible skipped row, not a gap', { timeout: 60_000 }, async () => {
  process.env.PORTCULLIS_H2LOAD = '/nonexistent/h2load';
  try {
    const results = await runE2E({ scenarios: [16], rounds: 1, durationSec: 1, warmupSec: 0, connections: 4, generator: detectGenerator(), log: quiet });
    assert.deepEqual(results.map((r) => [r.id, r.status]), [[16, 'skipped']]);
    assert.match(results[0]!.note!, /h2load is not installed/);
    const md = markdown({ date: 'now', machine: { nproc: 1, cpu: 'cpu', node: process.version, os: 'os', generator: 'wrk' }, settings: { rounds: 1, connections: 4, durationSec: 1 }, e2e: results });
    assert.match(md, /\| 16 \| .* \| skipped: h2load is not installed/);
  } finally {
    delete process.env.PORTCULLIS_H2LOAD;
  }
});

test('h2load output is parsed: req/s, requests done, non-2xx answers and failures as errors', () => {
  const out = `finished in 2.01s, 243.50 req/s, 23.75KB/s
requests: 487 total, 519 started, 487 done, 480 succeeded, 7 failed, 0 errored, 0 timeout
status codes: 490 2xx, 0 3xx, 3 4xx, 1 5xx
traffic: 47.49KB (48632) total, 3.95KB (4049) headers (space savings 90.62%), 30.52KB (31248) data
                     min         max         mean         sd        +/- sd
time for request:    11.67ms    341.70ms    109.70ms     91.66ms    69.20%
time for connect:     8.90ms      8.90ms      8.90ms         0us   100.00%
`;
  const r = parseH2load(out);
  assert.equal(r.rps, 243.5);
  assert.equal(r.requests, 487);
  assert.equal(r.errors, 3 + 1 + 7);
  assert.equal(r.meanMs, 109.7);
  assert.throws(() => parseH2load('h2load: could not connect'), /could not parse h2load output/);
});

test('a CPU profile is summarized by owner, top function and Portcullis module, inside the measured windows only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-profile-'));
  try {
    const root = 'file:///repo';
    const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName, url, lineNumber: 0, columnNumber: 0, scriptId: '0' }, hitCount: 0, children });
    const nodes = [
      frame(1, '(root)', '', [2, 5, 6]),
      frame(2, 'run', `${root}/src/plugins/auth/stage.ts`, [3]),
      frame(3, 'request', `${root}/node_modules/undici/lib/core/request.js`, [4]),
      frame(4, 'writev', ''),
      frame(5, '(idle)', ''),
      frame(6, 'route', `${root}/node_modules/find-my-way/index.js`),
    ];
    // 1 ms apart from t = 1000 µs: auth's own frame 2 samples, undici 3, writev 1, idle 2, Fastify's router 2;
    // then 4 samples of the router after the window (not counted).
    const samples = [2, 2, 3, 3, 3, 4, 5, 5, 6, 6, 6, 6, 6, 6];
    const file = join(dir, 'CPU.x.cpuprofile');
    writeFileSync(file, JSON.stringify({ nodes, startTime: 0, endTime: 15_000, samples, timeDeltas: [1000, ...samples.slice(1).map(() => 1000)] }));
    const s = summarizeProfile(file, [[1000, 10_000]]);
    assert.equal(s.busyMs, 8, 'idle apart, and the four samples after the window left out');
    const share = (owner: string) => s.owners.find((o) => o.owner === owner)?.share;
    assert.equal(share('undici'), 3 / 8);
    assert.equal(share('Fastify (+ its modules)'), 2 / 8);
    assert.equal(share('Portcullis (src/)'), 2 / 8);
    assert.equal(s.top[0]!.fn, 'request');
    // Inclusive: the auth stage's frame and everything it called (undici, writev).
    assert.deepEqual(s.portcullis, [{ module: 'src/plugins/auth/', share: 6 / 8 }]);
    assert.match(profileMarkdown('t', s), /\| `src\/plugins\/auth\/` \| 75\.0% \|/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
