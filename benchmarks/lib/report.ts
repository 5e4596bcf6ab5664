// Results: a Markdown table, a JSON file and an SVG bar chart (one bar per scenario), written
// without dependencies.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ScenarioResult } from '../e2e/scenarios.js';
import type { MemoryResult } from '../e2e/memory.js';
import { fmtBytes, fmtNs, fmtOps, judgedNs, type StageRow } from '../stages/stages.js';
import { profileMarkdown, type ProfileSummary } from './profile.js';

export interface Machine {
  nproc: number;
  cpu: string;
  node: string;
  os: string;
  generator: string;
}

export interface Results {
  date: string;
  machine: Machine;
  settings: Record<string, unknown>;
  stages?: StageRow[];
  e2e?: ScenarioResult[];
  memory?: MemoryResult;
  /** When each part was last run (a part not run keeps its figures, and its date, from before). */
  ran?: { stages?: string; e2e?: string; memory?: string };
  /** CPU profiles of the Portcullis processes (--cpu-prof), summarized. */
  profiles?: { date: string; scenarios: number[]; label: string; summary: ProfileSummary }[];
}

/** ", run <date>" when a part's figures come from an earlier run than the file's date. */
function ranAt(r: Results, part: 'stages' | 'e2e' | 'memory'): string {
  const d = r.ran?.[part];
  return d === undefined ? (r.ran ? ' — from an earlier run' : '') : d === r.date ? '' : ` — from the run of ${d}`;
}

const f = (n: number | undefined, digits = 0) => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits));

export function markdown(r: Results, opts: { only?: 'summary' } = {}): string {
  const out: string[] = [];
  out.push(`Run ${r.date} on ${r.machine.nproc} × ${r.machine.cpu}, Node ${r.machine.node}, ${r.machine.os}; load generator ${r.machine.generator}.`);
  out.push('');
  if (r.e2e) {
    const s = r.settings;
    out.push(`### End to end (${s.connections} connections, ${s.durationSec} s × ${s.rounds} interleaved rounds, medians)${ranAt(r, 'e2e')}`);
    out.push('');
    out.push('| # | Scenario | req/s | CPU µs/req | × bare proxy | p50 ms | p99 ms | peak RSS MB |');
    out.push('|---|---|---:|---:|---:|---:|---:|---:|');
    for (const x of r.e2e) {
      if (x.status === 'skipped') out.push(`| ${x.id} | ${x.label} | skipped: ${x.note} | | | | | |`);
      else {
        // h2load reports no percentiles: its mean latency stands in the p50 column, marked.
        const p50 = Number.isFinite(x.p50Ms ?? NaN) ? f(x.p50Ms, 2) : x.meanMs !== undefined ? `mean ${f(x.meanMs, 2)}` : '–';
        out.push(`| ${x.id} | ${x.label} | ${f(x.rps)} | ${f(x.cpuUsPerReq, 1)} | ${f(x.ratioToBare, 2)} | ${p50} | ${f(x.p99Ms, 2)} | ${f(x.peakRssMb, 1)} |`);
      }
    }
    out.push('');
    out.push('CPU µs/req: the server process tree\'s user + system CPU time over a round (from /proc) divided by the requests it served; it holds whatever the number of cores. The load generator and the upstream are not counted. Go (10, 11) runs with GOMAXPROCS=1, every Node server in one process except 14; Apache (12) is one child of 64 threads and nginx (8) one process. Peak RSS is summed over the process tree (14: primary + workers; 12: parent + child). 15-17 are loaded by h2load (one thread), which reports no percentiles: its mean latency is shown.');
    out.push('');
    const comparisons = comparisonLines(r);
    if (comparisons.length > 0 && opts.only !== 'summary') {
      out.push('### Side by side (paired per round)');
      out.push('');
      out.push('| Comparison | req/s ratio | CPU µs/req |');
      out.push('|---|---:|---|');
      out.push(...comparisons);
      out.push('');
    }
  }
  const targets = targetLines(r);
  if (opts.only === 'summary') {
    if (targets.length > 0) out.push('| Target | Measured | |', '|---|---|---|', ...targets, '');
    return out.join('\n');
  }
  if (targets.length > 0) {
    out.push('### Targets (issue 9: speed per core; issue 5)');
    out.push('');
    out.push('| Target | Measured | |');
    out.push('|---|---|---|');
    out.push(...targets);
    out.push('');
  }
  if (r.memory) {
    const m = r.memory;
    out.push(`### Memory (${m.sessions} sessions through the OIDC flow, then ${m.durationSec} s of load rotating over all of them)${ranAt(r, 'memory')}`);
    out.push('');
    out.push('| RSS baseline | after logins | load start | load end | RSS growth during load | peak | live heap after GC: before → after load | per session | req/s | p99 ms |');
    out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    const heap = m.heapBeforeLoadMb !== undefined && m.heapBeforeLoadMb >= 0 ? `${f(m.heapBeforeLoadMb, 1)} → ${f(m.heapAfterLoadMb, 1)} MB` : '–';
    out.push(`| ${f(m.rssBaselineMb, 1)} MB | ${f(m.rssAfterLoginsMb, 1)} MB | ${f(m.rssLoadStartMb, 1)} MB | ${f(m.rssLoadEndMb, 1)} MB | ${m.growthDuringLoadMb >= 0 ? '+' : ''}${f(m.growthDuringLoadMb, 1)} MB | ${f(m.rssPeakMb, 1)} MB | ${heap} | ${f(m.bytesPerSession / 1024, 1)} KB | ${f(m.rps)} | ${f(m.p99Ms, 2)} |`);
    out.push('');
  }
  if (r.stages) {
    out.push(`### Stages (mitata, no server)${ranAt(r, 'stages')}`);
    out.push('');
    out.push('Time/op is mitata\'s wall-clock mean; CPU/op is this process\'s CPU time per call over a loop (process.cpuUsage), which does not grow when the process waits for a busy machine\'s cores and leaves out an async call\'s wait for the other process (Redis), but includes the garbage collector\'s helper threads. Targets are judged on the smaller of the two.');
    out.push('');
    out.push('| Stage | Benchmark | time/op | CPU/op | ops/s | target |');
    out.push('|---|---|---:|---:|---:|---|');
    for (const x of r.stages) {
      if (x.skipped) {
        out.push(`| ${x.group} | ${x.name} | skipped: ${x.skipped} | | | |`);
        continue;
      }
      const judged = judgedNs(x);
      const target = x.targetNs ? `< ${fmtNs(x.targetNs)}: ${judged <= x.targetNs ? 'met' : `**missed** (${(judged / x.targetNs).toFixed(1)}×)`}` : '';
      const cpu = x.cpuNsPerOp !== undefined && Number.isFinite(x.cpuNsPerOp) ? fmtNs(x.cpuNsPerOp) : '–';
      if (x.bytes !== undefined) out.push(`| ${x.group} | ${x.name} | ${fmtBytes(x.bytes)} | | – | |`);
      else out.push(`| ${x.group} | ${x.name} | ${fmtNs(x.nsPerOp)} | ${cpu} | ${fmtOps(x.opsPerSec)} | ${target} |`);
    }
    out.push('');
  }
  if (r.profiles && r.profiles.length > 0) {
    out.push('### CPU profiles (--cpu-prof; samples taken during the measured rounds only)');
    out.push('');
    // A run without --cpu-prof keeps the last profiles: each says when it was taken.
    for (const p of r.profiles) out.push(profileMarkdown(`Scenario ${p.label} (profiled ${p.date}${p.date === r.date ? '' : ', another run than the tables'})`, p.summary));
  }
  return out.join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Horizontal bars, one per measured scenario, req/s; the bare proxy marked by a dashed line. */
export function svgChart(r: Results): string {
  const rows = (r.e2e ?? []).filter((x) => x.status === 'ok' && x.rps !== undefined);
  // The label column fits the longest label (about 7 px per character at 13 px).
  const labelW = Math.max(200, 16 + 7 * Math.max(0, ...rows.map((x) => `${x.id}. ${x.label}`.length)));
  const width = labelW + 680;
  const barH = 26;
  const gap = 10;
  const top = 50;
  const height = top + rows.length * (barH + gap) + 40;
  const max = Math.max(1, ...rows.map((x) => x.rps!));
  const scale = (width - labelW - 250) / max;
  const bare = rows.find((x) => x.id === 2);
  const palette: Record<string, string> = { 'proxy-auth': '#2b6cb0', 'proxy-allowlisted': '#2b6cb0', 'auth-nginx': '#2b6cb0', 'bare-proxy': '#718096', express: '#c05621', nginx: '#2f855a' };
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="13">`);
  parts.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  parts.push(`<text x="16" y="24" font-size="16" font-weight="600">Requests per second (median of ${esc(String(r.settings.rounds))} rounds, ${esc(String(r.settings.connections))} connections) — higher is better</text>`);
  parts.push(`<text x="16" y="42" fill="#555">${esc(`${r.machine.nproc} × ${r.machine.cpu}, Node ${r.machine.node}, ${r.machine.generator}, ${r.date}`)}</text>`);
  rows.forEach((x, i) => {
    const y = top + i * (barH + gap);
    const w = Math.max(1, x.rps! * scale);
    parts.push(`<text x="${labelW - 8}" y="${y + barH / 2 + 4}" text-anchor="end">${esc(`${x.id}. ${x.label}`)}</text>`);
    parts.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${palette[x.key] ?? '#a0aec0'}" rx="2"/>`);
    const ratio = x.ratioToBare !== undefined && x.id !== 2 ? ` (${x.ratioToBare.toFixed(2)}×)` : '';
    const cpu = x.cpuUsPerReq !== undefined && Number.isFinite(x.cpuUsPerReq) ? ` · ${x.cpuUsPerReq.toFixed(0)} µs CPU/req` : '';
    parts.push(`<text x="${labelW + w + 6}" y="${y + barH / 2 + 4}">${esc(`${Math.round(x.rps!).toLocaleString('en-US')}${ratio}${cpu}`)}</text>`);
  });
  if (bare) {
    const x = labelW + bare.rps! * scale;
    parts.push(`<line x1="${x.toFixed(1)}" y1="${top - 4}" x2="${x.toFixed(1)}" y2="${height - 34}" stroke="#718096" stroke-dasharray="4 3"/>`);
    parts.push(`<text x="${x.toFixed(1)}" y="${height - 20}" text-anchor="middle" fill="#555">bare proxy</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

export function writeResults(dir: string, r: Results): { md: string; json: string; svg: string } {
  mkdirSync(dir, { recursive: true });
  const paths = { md: join(dir, 'latest.md'), json: join(dir, 'latest.json'), svg: join(dir, 'latest.svg') };
  writeFileSync(paths.md, markdown(r) + '\n');
  writeFileSync(paths.json, JSON.stringify(r, null, 2) + '\n');
  if (r.e2e) writeFileSync(paths.svg, svgChart(r));
  return paths;
}

/** Median over rounds of a/b in the same round (rounds are interleaved, so pairs share the machine's mood). */
export function pairedRatio(a: ScenarioResult | undefined, b: ScenarioResult | undefined): number | undefined {
  if (!a || !b || a.status !== 'ok' || b.status !== 'ok' || a.rounds.length === 0 || a.rounds.length !== b.rounds.length) return undefined;
  const xs = a.rounds.map((x, i) => x.rps / b.rounds[i]!.rps).sort((p, q) => p - q);
  const m = xs.length >> 1;
  return xs.length % 2 ? xs[m]! : (xs[m - 1]! + xs[m]!) / 2;
}

/** Medians of per-round ratios a/b (CPU per request: a's median against b's). */
function comparisonLines(r: Results): string[] {
  const by = (id: number) => r.e2e?.find((x) => x.id === id && x.status === 'ok');
  const out: string[] = [];
  const pair = (what: string, a: number, b: number) => {
    const ratio = pairedRatio(by(a), by(b));
    if (ratio === undefined) return;
    out.push(`| ${what} | ${ratio.toFixed(2)}× | ${f(by(a)!.cpuUsPerReq, 1)} vs ${f(by(b)!.cpuUsPerReq, 1)} |`);
  };
  pair('workers: 2 (14) against workers: 1 (13), 2 cores shared with the load generator and the upstream', 14, 13);
  pair('HTTP/2, 1 connection × N streams (15) against HTTP/1.1, N connections (17)', 15, 17);
  pair('HTTP/2, N connections × 1 stream (16) against HTTP/1.1, N connections (17)', 16, 17);
  pair('HTTP/1.1 over TLS (17) against plain HTTP (3)', 17, 3);
  pair('Portcullis proxy, authenticated (3) against Go ReverseProxy + cookie session, 1 core (11)', 3, 11);
  pair('Portcullis proxy, authenticated (3) against Go ReverseProxy bare, 1 core (10)', 3, 10);
  pair('Portcullis proxy, authenticated (3) against Apache + mod_auth_openidc (12)', 3, 12);
  pair('Portcullis proxy, authenticated (3) against nginx proxy_pass, 1 process (8)', 3, 8);
  return out;
}

function targetLines(r: Results): string[] {
  const out: string[] = [];
  const by = (id: number) => r.e2e?.find((x) => x.id === id);
  const row = (what: string, ratio: number | undefined, goal: number) => {
    if (ratio === undefined) return;
    out.push(`| ${what} | ${ratio.toFixed(2)}× | ${ratio >= goal ? 'met' : `**missed** by ${((1 - ratio / goal) * 100).toFixed(0)}%`} |`);
  };
  row('Proxy mode authenticated (3) ≥ 1.3× bare @fastify/http-proxy (2)', pairedRatio(by(3), by(2)), 1.3);
  const cpu = by(3)?.cpuUsPerReq;
  if (cpu !== undefined && Number.isFinite(cpu)) out.push(`| Proxy mode authenticated (3) ≤ 60 µs of CPU per request | ${cpu.toFixed(1)} µs | ${cpu <= 60 ? 'met' : `**missed** by ${((cpu / 60 - 1) * 100).toFixed(0)}%`} |`);
  row('auth/nginx decision (5) ≥ 0.8× Fastify hello world (6)', pairedRatio(by(5), by(6)), 0.8);
  const sameHeaders = pairedRatio(by(5), by(9));
  if (sameHeaders !== undefined) out.push(`| (for reference) auth/nginx decision (5) vs hello world sending the same identity headers (9) | ${sameHeaders.toFixed(2)}× | – |`);
  // The floors: the same parts doing no decision, in the same rounds. CPU above them is Portcullis's own.
  const own = (a: number, b: number, what: string) => {
    const x = by(a)?.cpuUsPerReq;
    const y = by(b)?.cpuUsPerReq;
    if (x !== undefined && y !== undefined && Number.isFinite(x) && Number.isFinite(y)) out.push(`| (where the time goes) ${what} | ${x.toFixed(1)} − ${y.toFixed(1)} = ${(x - y).toFixed(1)} µs of CPU per request | – |`);
  };
  own(3, 18, "Portcullis's own work per proxied request: proxy authenticated (3) minus its floor (18), the same Fastify + undici path with the same upstream headers and no decision");
  own(5, 9, "Portcullis's own work per decision: auth/nginx (5) minus hello world sending the same identity headers (9)");
  const floor = by(18)?.cpuUsPerReq;
  if (floor !== undefined && Number.isFinite(floor)) out.push(`| (for reference) the floor (18) against the 60 µs target | ${floor.toFixed(1)} µs | ${floor <= 60 ? 'under' : '**over**: no decision at all meets 60 µs on this stack here'} |`);
  const express = by(7);
  if (express?.status === 'ok') out.push(`| Portcullis proxy authenticated (3) ahead of express + express-openid-connect (7) | ${pairedRatio(by(3), express)?.toFixed(1) ?? '–'}× | ${(pairedRatio(by(3), express) ?? 0) >= 2 ? 'met' : '**missed**'} |`);
  if (r.memory) {
    const m = r.memory;
    const pct = (m.growthDuringLoadMb / m.rssLoadStartMb) * 100;
    // "Flat" means no growth: RSS that falls during the load (V8 returning memory) is not a leak.
    out.push(`| ${m.sessions} sessions, ${m.durationSec} s sustained load: RSS flat${ranAt(r, 'memory')} | ${m.growthDuringLoadMb >= 0 ? '+' : ''}${m.growthDuringLoadMb.toFixed(1)} MB (${pct.toFixed(1)}%) | ${pct <= 5 ? 'met (no growth beyond 5%)' : '**missed**'} |`);
    if (m.heapBeforeLoadMb !== undefined && m.heapBeforeLoadMb >= 0) {
      const heapPct = ((m.heapAfterLoadMb - m.heapBeforeLoadMb) / m.heapBeforeLoadMb) * 100;
      out.push(`| (what is retained) live heap after a full GC, before → after the load${ranAt(r, 'memory')} | ${m.heapAfterLoadMb - m.heapBeforeLoadMb >= 0 ? '+' : ''}${(m.heapAfterLoadMb - m.heapBeforeLoadMb).toFixed(1)} MB (${heapPct.toFixed(1)}%) | ${heapPct <= 5 ? 'no leak' : '**grows**'} |`);
    }
  }
  return out;
}

/**
 * `--docs`: the generated part of docs/benchmarks.md (everything of latest.md) and of the README
 * (the run line, the end-to-end table, the targets), each between its markers, so that the
 * figures in the docs are always those of results/latest.json.
 */
export function updateDocs(root: string, r: Results): string[] {
  const files = [
    { path: join(root, 'docs/benchmarks.md'), marker: 'bench:results', text: markdown(r) },
    { path: join(root, 'README.md'), marker: 'bench:summary', text: markdown(r, { only: 'summary' }) },
  ];
  for (const f of files) {
    const doc = readFileSync(f.path, 'utf8');
    const start = `<!-- ${f.marker} (written by npm run bench -- --docs) -->`;
    const end = `<!-- /${f.marker} -->`;
    const a = doc.indexOf(start);
    const b = doc.indexOf(end);
    if (a < 0 || b < a) throw new Error(`${f.path}: the markers ${start} … ${end} are missing`);
    writeFileSync(f.path, `${doc.slice(0, a + start.length)}\n${f.text.trim()}\n${doc.slice(b)}`);
  }
  return files.map((f) => f.path);
}
