// The client's address in forward auth (issue 8 item 8): the example client-IP allowlist stage
// (examples/client-ip-allowlist) in the chain of a forward_single provider, behind real nginx and
// Caddy running the generated configurations. The browser connects from 127.0.0.2 and sends an
// X-Forwarded-For of its own; the stage must see 127.0.0.2. Two outposts: one that lists the
// reverse proxy (127.0.0.1) in trusted_proxies, one with the default (loopback callers believed).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startStack, type Stack } from '../support/stack.js';
import { startCaddy, startNginx, type LoopbackSetup, type RunningProxy } from '../support/reverse-proxies.js';

const STAGE_MODULE = resolve(dirname(fileURLToPath(import.meta.url)), '../../examples/client-ip-allowlist/index.ts');
const KINDS = ['nginx', 'caddy'] as const;
type Kind = (typeof KINDS)[number];
const CLIENT = '127.0.0.2';

const pipeline = (allow: string[]) => [
  { stage: 'auth' },
  { stage: STAGE_MODULE, options: { allow } },
  { stage: 'allowlist' },
  { stage: 'access_rules' },
  { stage: 'headers' },
  { stage: 'forward' },
  { stage: 'upstream' },
];

interface Setup {
  stack: Stack;
  proxies: Record<Kind, RunningProxy>;
  ports: Record<Kind, number>;
}
const setups: Setup[] = [];

/** Outposts whose example stage allows only `allow`, behind nginx and Caddy. */
async function deploy(allow: string[], trustedProxies: string[] | undefined): Promise<Setup> {
  const ports = {} as Record<Kind, number>;
  for (const k of KINDS) ports[k] = await freePort();
  const stack = await startStack({
    outpost: trustedProxies ? { trusted_proxies: trustedProxies } : {},
    extraConfig: { pipeline: pipeline(allow) },
    providers: KINDS.map((k) => ({
      name: `ip-${k}`,
      host: `ip-${k}.localtest`,
      mode: 'forward_single' as const,
      external_host: `http://ip-${k}.localtest:${ports[k]}`,
      extra: { skip_path_regex: '^/public(/|$)' },
    })),
  });
  const setupFor = (k: Kind): LoopbackSetup => ({
    mode: 'forward_single',
    outpost: `http://127.0.0.1:${stack.port}`,
    upstream: stack.upstream.url,
    appHosts: [`ip-${k}.localtest`],
    listen: { scheme: 'http', address: '127.0.0.1', port: ports[k] },
  });
  const proxies = { nginx: await startNginx([setupFor('nginx')]), caddy: await startCaddy([setupFor('caddy')]) };
  const s = { stack, proxies, ports };
  setups.push(s);
  return s;
}

after(async () => {
  for (const s of setups) {
    for (const k of KINDS) await s.proxies[k].stop();
    await s.stack.close();
  }
});

/** A browser request from 127.0.0.2 through the reverse proxy. */
function viaProxy(s: Setup, k: Kind, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: s.ports[k], path, localAddress: CLIENT, agent: false, headers: { host: `ip-${k}.localtest:${s.ports[k]}`, ...headers } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

for (const [label, trusted] of [
  ['the reverse proxy in trusted_proxies', ['127.0.0.1/32']],
  ['trusted_proxies empty (loopback callers believed)', undefined],
] as const) {
  describe(label, () => {
    let outside: Setup;
    let inside: Setup;
    before(async () => {
      outside = await deploy(['10.0.0.0/8'], trusted ? [...trusted] : undefined);
      inside = await deploy([`${CLIENT}/32`], trusted ? [...trusted] : undefined);
    });

    for (const k of KINDS) {
      test(`${k}: a client-sent X-Forwarded-For does not get past the client-IP allowlist`, async () => {
        const from = outside.stack.upstream.requests.length;
        for (const xff of ['10.1.2.3', '10.1.2.3, 10.9.9.9', '127.0.0.1']) {
          const res = await viaProxy(outside, k, '/public/page', { 'x-forwarded-for': xff, 'x-real-ip': '10.1.2.3', forwarded: 'for=10.1.2.3' });
          assert.equal(res.status, 403, `${k}, X-Forwarded-For: ${xff}: ${res.status} ${res.body.slice(0, 200)}`);
        }
        assert.equal(outside.stack.upstream.requests.length, from, 'nothing reached the application');
      });

      test(`${k}: the stage sees the real client address, whatever the client claims`, async () => {
        const res = await viaProxy(inside, k, '/public/page', { 'x-forwarded-for': '10.1.2.3' });
        assert.equal(res.status, 200, `${k}: ${res.body.slice(0, 200)}`);
        const seen = inside.stack.upstream.requests.at(-1)!;
        assert.equal(seen.url, '/public/page');
        // What the application receives is the proxy's own forwarded header, not the client's.
        const xff = String(seen.headers['x-forwarded-for'] ?? '');
        assert.doesNotMatch(xff, /10\.1\.2\.3/, `${k} passed the client's X-Forwarded-For on: ${xff}`);
        assert.match(xff, /127\.0\.0\.2$/);
      });
    }
  });
}
