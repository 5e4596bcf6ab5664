// Proxy mode towards the upstream: WebSockets, failures, TLS verification, the HTTPS listener,
// trusted proxies, and what reaches the logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { generate as generateCert } from 'selfsigned';
import WebSocket from 'ws';
import { pino } from 'pino';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';
import { startClosedPort, startUpstream, selfSignedCert, type RunningUpstream } from '../support/upstream.js';

const ALICE = { username: 'alice', password: 'alice' };
let stack: Stack;
let tlsUpstream: RunningUpstream;
let closedPort: number;
const logLines: string[] = [];

const certDir = mkdtempSync(join(tmpdir(), 'portcullis-certs-'));

before(async () => {
  closedPort = await startClosedPort();
  const appCert = await generateCert([{ name: 'commonName', value: 'app.localtest' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'app.localtest' }] }],
  } as never).then((g) => ({ cert: g.cert, key: g.private }));
  writeFileSync(join(certDir, 'app.crt'), appCert.cert);
  writeFileSync(join(certDir, 'app.key'), appCert.key);
  tlsUpstream = await startUpstream({ name: 'tls', tls: await selfSignedCert(['127.0.0.1', 'localhost']) });
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString('utf8'));
      cb();
    },
  });
  stack = await startStack({
    https: true,
    outpost: {
      upstream_timeout: 1,
      trusted_proxies: ['127.0.0.2/32'],
      tls: { certificates: [{ cert: join(certDir, 'app.crt'), key: join(certDir, 'app.key') }] },
    },
    outpostOptions: { logger: pino({ level: 'debug' }, sink) },
    providers: [
      { name: 'app', host: 'app.localtest' },
      { name: 'down', host: 'down.localtest', internal_host: `http://127.0.0.1:${closedPort}` },
      { name: 'tls-strict', host: 'strict.localtest', internal_host: tlsUpstream.url },
      { name: 'tls-lax', host: 'lax.localtest', internal_host: tlsUpstream.url.replace('127.0.0.1', 'localhost'), extra: { internal_host_ssl_validation: false } },
    ],
  });
});
after(async () => {
  await stack.close();
  await tlsUpstream.close();
  rmSync(certDir, { recursive: true, force: true });
});

async function login(host: string): Promise<CookieJar> {
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(host, '/'), ALICE, { jar });
  assert.notEqual(final.status, 302);
  return jar;
}

test('WebSocket upgrades are authenticated and carry the identity headers', async () => {
  const jar = await login('app.localtest');
  const url = `ws://127.0.0.1:${stack.port}/socket?x=1`;
  const ws = new WebSocket(url, { headers: { host: `app.localtest:${stack.port}`, cookie: jar.header(new URL(stack.url('app.localtest'))), 'x-authentik-username': 'mallory' } });
  const hello = await new Promise<{ type: string; url: string; headers: Record<string, string> }>((resolve, reject) => {
    ws.once('message', (data) => resolve(JSON.parse(String(data))));
    ws.once('error', reject);
  });
  assert.equal(hello.type, 'hello');
  assert.equal(hello.url, '/socket?x=1');
  assert.equal(hello.headers['x-authentik-username'], 'alice');
  const echoed = await new Promise<string>((resolve) => {
    ws.once('message', (d) => resolve(String(d)));
    ws.send('ping over the proxy');
  });
  assert.equal(echoed, 'ping over the proxy');
  ws.close();
});

test('without a session the upgrade is refused', async () => {
  const before = stack.upstream.requests.length;
  const ws = new WebSocket(`ws://127.0.0.1:${stack.port}/socket`, { headers: { host: `app.localtest:${stack.port}` } });
  const status = await new Promise<number>((resolve) => {
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('open', () => resolve(101));
    ws.once('error', () => resolve(-1));
  });
  assert.notEqual(status, 101);
  assert.equal(stack.upstream.requests.length, before, 'nothing reached the upstream');
});

test('an unreachable upstream gives a 502 page with a request id, and Portcullis keeps serving', async () => {
  const jar = await loginOrPage('down.localtest');
  const res = await httpGet(stack.url('down.localtest', '/x'), { jar });
  assert.equal(res.status, 502);
  assert.match(res.body, /request id <code>[0-9a-f-]{36}<\/code>/);
  const ok = await httpGet(stack.url('app.localtest', '/outpost.goauthentik.io/ping'));
  assert.equal(ok.status, 204);
});

test('a slow upstream gives 504', async () => {
  const jar = await login('app.localtest');
  const res = await httpGet(stack.url('app.localtest', '/slow?ms=3000'), { jar, headers: { accept: 'application/json' } });
  assert.equal(res.status, 504);
  assert.equal(JSON.parse(res.body).error, 'upstream.timeout');
});

test('upstream TLS is verified unless internal_host_ssl_validation is false', async () => {
  const strict = await httpGet(stack.url('strict.localtest', '/'), { jar: await login('strict.localtest') });
  assert.equal(strict.status, 502);
  const lax = await httpGet(stack.url('lax.localtest', '/'), { jar: await login('lax.localtest') });
  assert.equal(lax.status, 200);
  assert.equal(JSON.parse(lax.body).name, 'tls');
});

test('the HTTPS listener serves the same outpost, with a generated certificate', async () => {
  const res = await httpGet(`https://app.localtest:${stack.httpsPort}/outpost.goauthentik.io/ping`);
  assert.equal(res.status, 204);
  // external_host is http://app.localtest:PORT, so the https host:port is another host: 400.
  const other = await httpGet(`https://app.localtest:${stack.httpsPort}/`);
  assert.equal(other.status, 400);
});

test('HTTPS certificates are chosen by SNI; other names get the generated one', async () => {
  const altNameFor = (servername: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: stack.httpsPort!, servername, rejectUnauthorized: false }, () => {
        const alt = socket.getPeerCertificate().subjectaltname ?? '';
        socket.end();
        resolve(alt);
      });
      socket.on('error', reject);
    });
  assert.equal(await altNameFor('app.localtest'), 'DNS:app.localtest', 'the configured certificate');
  assert.match(await altNameFor('other.localtest'), /^DNS:localhost, /, 'the generated certificate');
});

test('X-Forwarded-* are honoured only from trusted_proxies', async () => {
  // 127.0.0.2 is trusted, 127.0.0.1 is not (see outpost.trusted_proxies above).
  const viaTrusted = await rawGet('127.0.0.2', '/public-probe', { host: 'ignored.example', 'x-forwarded-host': `app.localtest:${stack.port}`, 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.9' });
  assert.equal(viaTrusted.status, 302);
  assert.match(String(viaTrusted.headers.location), /rd=https%3A%2F%2Fapp\.localtest/);
  const untrusted = await rawGet('127.0.0.1', '/public-probe', { host: 'ignored.example', 'x-forwarded-host': `app.localtest:${stack.port}` });
  assert.equal(untrusted.status, 400, 'an untrusted X-Forwarded-Host cannot pick the provider');
});

test('logs carry no secrets, tokens, cookies or query strings', async () => {
  const jar = await login('app.localtest');
  await httpGet(stack.url('app.localtest', '/secret-query?token=hunter2'), { jar });
  const all = logLines.join('');
  assert.ok(all.length > 0);
  assert.doesNotMatch(all, /hunter2/);
  assert.doesNotMatch(all, /authentik_proxy_[0-9a-f]{8}=/);
  assert.doesNotMatch(all, /eyJ[\w-]{10,}\.[\w-]{10,}\./, 'no JWT in the logs');
  assert.doesNotMatch(all, new RegExp(stack.configYaml.match(/client_secret: (\S+)/)![1]!));
  assert.doesNotMatch(all, new RegExp(stack.configYaml.match(/cookie_secret: (\S+)/)![1]!));
  assert.match(all, /"msg":"login completed"/);
});

async function loginOrPage(host: string): Promise<CookieJar> {
  const jar = new CookieJar();
  await loginThrough(stack.url(host, '/'), ALICE, { jar });
  return jar;
}

/** A request from a chosen loopback source address. */
async function rawGet(localAddress: string, path: string, headers: Record<string, string>) {
  const http = await import('node:http');
  return new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: stack.port, path, headers, localAddress, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('request bodies are streamed to the upstream unchanged', async () => {
  const jar = await login('app.localtest');
  const big = Buffer.alloc(3 * 1024 * 1024 + 17, 0x62).toString('latin1');
  const { createHash } = await import('node:crypto');
  for (const [body, type] of [['{"a":1,"b":[true,null]}', 'application/json'], ['x=1&y=%2F', 'application/x-www-form-urlencoded'], [big, 'application/octet-stream']] as const) {
    const res = await httpGet(stack.url('app.localtest', '/upload?kind=1'), { jar, method: 'POST', body, headers: { 'content-type': type } });
    const seen = JSON.parse(res.body) as { method: string; bodyLength: number; bodySha256: string; headers: Record<string, string> };
    assert.equal(seen.method, 'POST');
    assert.equal(seen.bodyLength, Buffer.byteLength(body));
    assert.equal(seen.bodySha256, createHash('sha256').update(body).digest('hex'));
    assert.equal(seen.headers['content-type'], type);
  }
});

test('large answers stream through whole; HEAD gets headers only', async () => {
  const jar = await login('app.localtest');
  const n = 8 * 1024 * 1024 + 3;
  const res = await httpGet(stack.url('app.localtest', `/bytes?n=${n}`), { jar });
  assert.equal(res.status, 200);
  assert.equal(res.body.length, n);
  assert.equal(res.headers['content-length'], String(n));
  const head = await httpGet(stack.url('app.localtest', '/anything'), { jar, method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  assert.equal(head.headers['x-upstream-name'], 'upstream');
});

test("the upstream's Set-Cookie and status pass through, next to Portcullis's own cookies", async () => {
  const jar = await login('app.localtest');
  const res = await httpGet(stack.url('app.localtest', '/set-cookie'), { jar });
  const cookies = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  assert.ok(cookies.includes('app_session=abc; Path=/; HttpOnly'));
  assert.ok(cookies.includes('app_pref=dark; Path=/'));
  assert.equal((await httpGet(stack.url('app.localtest', '/status/418'), { jar })).status, 418);
  // A bad session cookie on an allowlisted path: the page is proxied and the cookie cleared too.
  const name = stack.outpost.providers.byName('app')!.cookieName;
  const cleared = await httpGet(stack.url('app.localtest', '/status/404'), { jar, headers: { cookie: `${name}=garbage` } });
  assert.equal(cleared.status, 302, 'not allowlisted: login');
});

test('a client that goes away mid-answer does not disturb the next requests', async () => {
  const jar = await login('app.localtest');
  const http = await import('node:http');
  await new Promise<void>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: stack.port, path: '/bytes?n=50000000', headers: { host: `app.localtest:${stack.port}`, cookie: jar.header(new URL(stack.url('app.localtest'))) } }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.end();
  });
  const after = await httpGet(stack.url('app.localtest', '/ok'), { jar });
  assert.equal(after.status, 200);
});
