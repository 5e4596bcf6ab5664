// Scenarios 10 and 11: Go's httputil.ReverseProxy (servers/go/reverseproxy.go), compiled once per
// run with Debian's golang-go (standard library only) and run with GOMAXPROCS=1: one core, like
// the Node servers, so req/s compare per core (CPU µs per request compares whatever the cores).
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startProgram, type Child } from '../lib/proc.js';

const SOURCE = fileURLToPath(new URL('./servers/go/reverseproxy.go', import.meta.url));
let binary: string | null = null;

export function goAvailable(): boolean {
  return !spawnSync('go', ['version'], { stdio: 'ignore' }).error;
}

function build(): string {
  if (binary) return binary;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-go-'));
  const out = join(dir, 'reverseproxy');
  const res = spawnSync('go', ['build', '-o', out, SOURCE], {
    encoding: 'utf8',
    env: { ...process.env, GOCACHE: process.env.GOCACHE ?? join(tmpdir(), 'portcullis-gocache'), GOFLAGS: '-mod=mod', GO111MODULE: 'off' },
  });
  if (res.status !== 0) throw new Error(`go build failed:\n${res.stderr}`);
  binary = out;
  return out;
}

export async function startGoProxy(upstreamPort: number, mode: 'bare' | 'session'): Promise<Child> {
  const bin = build();
  const port = await freePort();
  return startProgram(`go-${mode}`, bin, ['-listen', `127.0.0.1:${port}`, '-upstream', `http://127.0.0.1:${upstreamPort}`, '-mode', mode], port, {
    env: { ...process.env, GOMAXPROCS: '1' },
    stopSignal: 'SIGTERM',
  });
}
