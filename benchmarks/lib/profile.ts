// Where the time goes: a V8 CPU profile (node --cpu-prof) summarized by self time — the top
// functions, and the share of the busy time (idle and GC apart) spent in undici, Fastify, Node
// itself and Portcullis — and by inclusive time per Portcullis module (the innermost src/ frame
// of each sample: a stage's share includes the library calls it makes).
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  /** Sampled milliseconds: all, and busy (without idle, program and GC). */
  totalMs: number;
  busyMs: number;
  /** Shares of busy time, 0-1, by who owns the function (self time). */
  owners: { owner: string; share: number }[];
  /** Garbage collector time, as a share of busy + GC. */
  gcShare: number;
  top: { fn: string; where: string; owner: string; share: number }[];
  /** Inclusive shares of busy time by the innermost Portcullis module on the stack. */
  portcullis: { module: string; share: number }[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** Who a frame belongs to, from its script URL. */
export function ownerOf(frame: CallFrame): string {
  const url = frame.url;
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : 'V8/Node native (C++ bindings, builtins)';
  if (url.startsWith('node:')) return 'Node core (JS: http, net, streams, events)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    const pkg = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
    if (pkg === 'undici') return 'undici';
    if (pkg === 'fastify' || pkg.startsWith('@fastify/') || ['find-my-way', 'avvio', 'light-my-request', 'fast-json-stringify', 'fastify-plugin', 'abstract-logging', 'toad-cache', 'safe-regex2', 'ret', 'fast-querystring', 'fast-decode-uri-component', 'process-warning', 'rfdc', 'secure-json-parse'].includes(pkg)) return 'Fastify (+ its modules)';
    if (pkg === 'pino' || pkg.startsWith('pino-')) return 'pino';
    if (pkg === 'tsx' || pkg === 'esbuild') return 'tsx loader';
    return `other package: ${pkg}`;
  }
  if (/\/src\//.test(url)) return 'Portcullis (src/)';
  return 'other script';
}

function portcullisModule(url: string): string | null {
  const m = /\/src\/(.+)$/.exec(url);
  if (!m || url.includes('/node_modules/')) return null;
  const parts = m[1]!.split('/');
  // A stage is its folder (src/plugins/<stage>/); everything else its file.
  if (parts[0] === 'plugins' && parts.length > 2) return `src/plugins/${parts[1]}/`;
  return `src/${parts.join('/')}`;
}

/**
 * `windowsUs`: only samples taken inside these intervals (CLOCK_MONOTONIC µs, the clock of both
 * process.hrtime and V8's profile timestamps on Linux) count; none given: the whole profile.
 */
export function summarizeProfile(file: string, windowsUs: readonly [number, number][] = [], topN = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // Each sample's duration is the delta to the next sample (the last one: the mean).
  const mean = (p.endTime - p.startTime) / Math.max(1, p.samples.length);
  const selfUs = new Map<number, number>();
  const inWindow = (t: number) => windowsUs.length === 0 || windowsUs.some(([a, b]) => t >= a && t <= b);
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    at += p.timeDeltas[i]!;
    if (!inWindow(at)) continue;
    const dt = i + 1 < p.timeDeltas.length ? p.timeDeltas[i + 1]! : mean;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + Math.max(0, dt));
  }
  let total = 0;
  let busy = 0;
  let gc = 0;
  const owners = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; owner: string; us: number }>();
  const modules = new Map<string, number>();
  const innermost = new Map<number, string | null>();
  const moduleOf = (id: number): string | null => {
    if (innermost.has(id)) return innermost.get(id)!;
    const n = byId.get(id)!;
    const own = portcullisModule(n.callFrame.url);
    const up = parent.get(id);
    const found = own ?? (up === undefined ? null : moduleOf(up));
    innermost.set(id, found);
    return found;
  };
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    total += us;
    if (frame.functionName === '(garbage collector)') gc += us;
    if (SPECIAL.has(frame.functionName) && frame.url === '') continue;
    busy += us;
    const owner = ownerOf(frame);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
    // tsx's transpiled modules report line 1 for every function: the file alone is given then.
    const file = frame.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*?\/(src|benchmarks)\//, '$1/');
    const where = frame.url === '' ? '' : frame.lineNumber > 0 ? `${file}:${frame.lineNumber + 1}` : file;
    const key = `${frame.functionName}\u0000${where}`;
    const entry = fns.get(key) ?? { fn: frame.functionName || '(anonymous)', where, owner, us: 0 };
    entry.us += us;
    fns.set(key, entry);
    const mod = moduleOf(id);
    if (mod) modules.set(mod, (modules.get(mod) ?? 0) + us);
  }
  const share = (us: number) => (busy > 0 ? us / busy : 0);
  return {
    file,
    totalMs: total / 1000,
    busyMs: busy / 1000,
    owners: [...owners].map(([owner, us]) => ({ owner, share: share(us) })).sort((a, b) => b.share - a.share),
    gcShare: busy + gc > 0 ? gc / (busy + gc) : 0,
    top: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, topN).map((e) => ({ fn: e.fn, where: e.where, owner: e.owner, share: share(e.us) })),
    portcullis: [...modules].map(([module, us]) => ({ module, share: share(us) })).sort((a, b) => b.share - a.share),
  };
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

export function profileMarkdown(title: string, s: ProfileSummary): string {
  const out: string[] = [];
  out.push(`#### ${title}`);
  out.push('');
  out.push(`${s.busyMs.toFixed(0)} ms busy of ${s.totalMs.toFixed(0)} ms sampled during the measured rounds; garbage collection ${pct(s.gcShare)} of busy + GC. Shares below are of busy time (idle, program and GC apart).`);
  out.push('');
  out.push('| Self time by owner | share |');
  out.push('|---|---:|');
  for (const o of s.owners.filter((o) => o.share >= 0.005)) out.push(`| ${o.owner} | ${pct(o.share)} |`);
  out.push('');
  out.push('| Top self-time functions | where | owner | share |');
  out.push('|---|---|---|---:|');
  for (const t of s.top) out.push(`| \`${t.fn}\` | ${t.where ? `\`${t.where}\`` : '(native)'} | ${t.owner} | ${pct(t.share)} |`);
  out.push('');
  out.push('| Portcullis module (inclusive: the innermost src/ frame on the stack, with the library calls it makes) | share |');
  out.push('|---|---:|');
  for (const m of s.portcullis.filter((m) => m.share >= 0.002)) out.push(`| \`${m.module}\` | ${pct(m.share)} |`);
  out.push('');
  return out.join('\n');
}
