// Smoke test of the benchmark harness (not a benchmark: nothing about speed is asserted). The
// end-to-end harness starts its processes, logs in through the OIDC flow, runs one short
// scenario and cleans up; one stage benchmark runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runE2E } from '../../benchmarks/e2e/scenarios.js';
import { runStageBenches } from '../../benchmarks/stages/stages.js';
import { detectGenerator } from '../../benchmarks/lib/load.js';
import { cpuSeconds } from '../../benchmarks/lib/proc.js';
import { spawn } from 'node:child_process';
import { markdown, svgChart } from '../../benchmarks/lib/report.js';

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
