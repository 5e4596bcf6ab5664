// Smoke test of the benchmark harness (not a benchmark: nothing about speed is asserted). The
// end-to-end harness starts its processes, logs in through the OIDC flow, runs one short
// scenario and cleans up; one stage benchmark runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runE2E } from '../../benchmarks/e2e/scenarios.js';
import { runStageBenches } from '../../benchmarks/stages/stages.js';
import { detectGenerator } from '../../benchmarks/lib/load.js';
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
  const report = { date: 'now', machine: { nproc: 1, cpu: 'cpu', node: process.version, os: 'os', generator: 'wrk' }, settings: { rounds: 1, connections: 4, durationSec: 1 }, e2e: results };
  assert.match(markdown(report), /Portcullis proxy, authenticated/);
  assert.match(svgChart(report), /^<svg[\s\S]*<\/svg>\n$/);
});

test('a stage benchmark runs', { timeout: 60_000 }, async () => {
  const rows = await runStageBenches({ quick: true, filter: ['upstream'], log: quiet });
  assert.ok(rows.length >= 1);
  for (const row of rows) assert.ok(row.nsPerOp > 0 && row.opsPerSec > 0);
});
