// Trust at the edges, request targets (issue 8 items 3 and 4): double-encoded traversal is
// refused in every entry, the Envoy entry refuses dot segments as nginx and Traefik do, and the
// hostile X-Original-URL that once backtracked quadratically is answered at once. The requests
// are the ones each reverse proxy sends (Portcullis is reached directly from loopback).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startStack, type Stack } from '../support/stack.js';
import { httpGet } from '../support/browserless.js';

const APP = 'app.localtest';
const FWD = 'fwd.localtest';
let stack: Stack;

before(async () => {
  stack = await startStack({
    providers: [
      { name: 'app', host: APP, extra: { skip_path_regex: '^/public/' } },
      { name: 'fwd', host: FWD, mode: 'forward_single', extra: { skip_path_regex: '^/public/' } },
    ],
  });
});
after(async () => stack?.close());

const fwdHost = () => `${FWD}:${stack.port}`;

/** The check request each reverse proxy sends for `path` on the forward_single host. */
function checkRequest(entry: 'nginx' | 'traefik' | 'caddy' | 'envoy', path: string): [string, Record<string, string>] {
  const base = '/outpost.goauthentik.io/auth/';
  if (entry === 'nginx') return [base + 'nginx', { 'x-original-url': `http://${fwdHost()}${path}`, host: fwdHost() }];
  if (entry === 'envoy') return [base + 'envoy' + path, { host: fwdHost() }];
  return [base + entry, { 'x-forwarded-proto': 'http', 'x-forwarded-host': fwdHost(), 'x-forwarded-uri': path, 'x-forwarded-method': 'GET' }];
}

/** One request on a raw socket: the path exactly as written (no client tidies it). */
function rawStatus(path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: stack.port });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    socket.on('error', reject);
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.write(`GET ${path} HTTP/1.1\r\n${lines}Connection: close\r\n\r\n`);
  });
}

const DOUBLE_ENCODED = ['/public/%252e%252e/admin', '/public/%252E%252E%252Fadmin', '/public/..%252fadmin', '/public/%255c..%255cadmin', '/public/%25%32%65%25%32%65/admin', '/public/%25252e%25252e/admin'];

test('a dot, slash or backslash encoded twice is refused with 400 in proxy mode and in every forward-auth entry', async () => {
  const before = stack.upstream.requests.length;
  for (const path of DOUBLE_ENCODED) {
    const proxied = await httpGet(stack.url(APP, path));
    assert.equal(proxied.status, 400, `proxy ${path}: ${proxied.status}`);
    for (const entry of ['nginx', 'traefik', 'caddy', 'envoy'] as const) {
      const [url, headers] = checkRequest(entry, path);
      const res = await httpGet(`http://127.0.0.1:${stack.port}${url}`, { headers });
      // The nginx endpoint refuses a client's path with 403: auth_request would turn a 400 into a 500.
      assert.equal(res.status, entry === 'nginx' ? 403 : 400, `${entry} ${path}: ${res.status} ${res.body.slice(0, 200)}`);
    }
  }
  assert.equal(stack.upstream.requests.length, before, 'nothing reached the upstream');
  // An ordinary escaped percent sign still works.
  assert.equal((await httpGet(stack.url(APP, '/public/100%25'))).status, 200);
  const [url, headers] = checkRequest('envoy', '/public/100%25');
  assert.equal((await httpGet(`http://127.0.0.1:${stack.port}${url}`, { headers })).status, 200);
});

test('the Envoy entry refuses "." and ".." segments instead of resolving them, as nginx and Traefik do', async () => {
  for (const path of ['/admin/%2e%2e/public/x', '/admin/../public/x', '/admin/%2E%2E/public/x', '/public/./x', '/admin/.%2e/public/x']) {
    for (const entry of ['envoy', 'nginx', 'traefik'] as const) {
      const [url, headers] = checkRequest(entry, path);
      assert.equal(await rawStatus(url, headers), entry === 'nginx' ? 403 : 400, `${entry} ${path}`);
    }
  }
  // Without dot segments the allowlisted path is still let through anonymously, the other challenged.
  const [pub, h1] = checkRequest('envoy', '/public/x');
  assert.equal(await rawStatus(pub, h1), 200);
  const [priv, h2] = checkRequest('envoy', '/admin/x');
  assert.equal(await rawStatus(priv, h2), 302);
});

test('the X-Original-URL that backtracked quadratically (5.5 KB host, path ending in "#") gets 400 at once, and the outpost keeps answering', async () => {
  const hostile = `http://${'a'.repeat(5_500)}/x#`;
  const t0 = Date.now();
  const answers = await Promise.all(
    Array.from({ length: 40 }, () => httpGet(`http://127.0.0.1:${stack.port}/outpost.goauthentik.io/auth/nginx`, { headers: { 'x-original-url': hostile, host: fwdHost() } })),
  );
  const elapsed = Date.now() - t0;
  for (const a of answers) assert.equal(a.status, 400);
  const ping = await httpGet(stack.url(APP, '/outpost.goauthentik.io/ping'));
  assert.equal(ping.status, 204);
  // Generous for a loaded machine; the quadratic parse alone cost ~50–100 ms per request (2–4 s).
  assert.ok(elapsed < 1_500, `40 hostile requests took ${elapsed} ms`);
});
