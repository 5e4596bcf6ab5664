// HTTP/2 on the HTTPS listener: ALPN offers h2 and http/1.1; curl --http2, Node's http2 client
// and Debian's Chromium get the same decisions, identity headers and streamed bodies over h2 as
// HTTP/1.1 clients do; WebSockets keep working (HTTP/1.1 upgrade on the same port); answers carry
// no connection-specific headers; `listeners.https_http2: false` turns h2 off.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { type Browser } from 'playwright-core';
import WebSocket from 'ws';
import { startStack, freePort, type Stack } from '../support/stack.js';
import { launchChromium } from '../support/chromium.js';
import { StageRegistry } from '../../src/pipeline/registry.js';
import { CONTINUE, defineStage } from '../../src/pipeline/contract.js';
import { CookieJar, httpGet, loginThrough, followRedirects, parseForms, submitForm } from '../support/browserless.js';

const run = promisify(execFile);
const APP = 'app.localtest';
const ODD = 'odd.localtest';
const ALICE = { username: 'alice', password: 'alice' };

let stack: Stack;
let origin: string;
/** An upstream whose answers carry every connection-specific header HTTP/1.1 allows. */
let oddUpstream: http.Server;
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-h2-'));
  oddUpstream = http.createServer((req, res) => {
    res.writeHead(200, [
      ['Content-Type', 'text/plain'],
      ['Connection', 'keep-alive, X-Hop'],
      ['Keep-Alive', 'timeout=5'],
      ['X-Hop', 'for the hop only'],
      ['Proxy-Connection', 'keep-alive'],
      ['Upgrade', 'h2c'],
      ['X-End-To-End', 'kept'],
    ].flat());
    // Chunked (Transfer-Encoding), in several writes.
    res.write('one,');
    setTimeout(() => res.end(`two,${req.url}`), 20);
  });
  await new Promise<void>((resolve) => oddUpstream.listen(0, '127.0.0.1', resolve));
  const httpsPort = await freePort();
  origin = `https://${APP}:${httpsPort}`;
  // A stage of the kind a user writes, answering with HTTP/1.1 connection headers.
  const registry = new StageRegistry().register(
    defineStage({
      name: 'closer',
      create: () => ({
        name: 'closer',
        run: (ctx) =>
          ctx.target.path === '/stage-answer'
            ? { kind: 'respond', status: 200, headers: { connection: 'close', 'keep-alive': 'timeout=1', 'x-stage': 'answered' }, body: 'from a stage' }
            : CONTINUE,
      }),
    }),
  );
  stack = await startStack({
    https: true,
    httpsPort,
    outpostOptions: { registry },
    extraConfig: { pipeline: ['auth', 'closer', 'allowlist', 'access_rules', 'headers', 'forward', 'upstream'].map((stage) => ({ stage })) },
    providers: [
      { name: 'app', host: APP, external_host: origin, extra: { skip_path_regex: '^/public/' } },
      {
        name: 'odd',
        host: ODD,
        external_host: `https://${ODD}:${httpsPort}`,
        internal_host: `http://127.0.0.1:${(oddUpstream.address() as AddressInfo).port}`,
        extra: { skip_path_regex: '^/' },
      },
    ],
  });
});

after(async () => {
  await stack?.close();
  await new Promise<void>((resolve) => oddUpstream?.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

function alpn(protocols: string[], port = stack.httpsPort!): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: APP, ALPNProtocols: protocols, rejectUnauthorized: false }, () => {
      resolve(socket.alpnProtocol ?? false);
      socket.end();
    });
    socket.on('error', reject);
  });
}

/** curl with HTTP/2 (or `--http1.1`): status, protocol version, headers and body. */
async function curl(url: string, args: string[] = [], version = '--http2'): Promise<{ version: string; status: number; headers: Record<string, string[]>; body: string }> {
  const u = new URL(url);
  const headerFile = join(dir, `h-${Math.random().toString(36).slice(2)}`);
  const { stdout } = await run('curl', ['-sS', '-k', version, '--resolve', `${u.hostname}:${u.port}:127.0.0.1`, '-D', headerFile, '-w', '\n%{http_version}', ...args, url], { maxBuffer: 64 * 1024 * 1024 });
  const cut = stdout.lastIndexOf('\n');
  const headers: Record<string, string[]> = {};
  const lines = readFileSync(headerFile, 'utf8').split(/\r?\n/);
  const statusLine = lines.shift() ?? '';
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).toLowerCase();
    (headers[name] ??= []).push(line.slice(colon + 1).trim());
  }
  return { version: stdout.slice(cut + 1), status: Number(statusLine.split(' ')[1]), headers, body: stdout.slice(0, cut) };
}

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** One request with Node's HTTP/2 client. */
function h2Request(url: string, headers: Record<string, string> = {}, body?: Buffer): Promise<H2Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const session = http2.connect(u.origin, { rejectUnauthorized: false, servername: u.hostname, lookup: loopback } as unknown as http2.SecureClientSessionOptions);
    session.on('error', reject);
    const req = session.request({ ':method': body ? 'POST' : 'GET', ':path': u.pathname + u.search, ...headers });
    const chunks: Buffer[] = [];
    let answer: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (answer = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve({ status: Number(answer[':status']), headers: answer, body: Buffer.concat(chunks) });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A session cookie for alice on the app (logged in through the IdP over HTTP/1.1). */
async function aliceCookie(): Promise<{ jar: CookieJar; cookie: string }> {
  const jar = new CookieJar();
  const { final } = await loginThrough(`${origin}/start-here`, ALICE, { jar });
  assert.equal(final.status, 200, final.body.slice(0, 300));
  return { jar, cookie: jar.header(new URL(origin))! };
}

/** DNS for the clients that take a lookup function: every name is 127.0.0.1. */
const loopback = (_host: string, options: { all?: boolean }, cb: (...args: unknown[]) => void) =>
  options.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4);

const seenBy = (body: string | Buffer) => JSON.parse(body.toString()) as { url: string; headers: Record<string, string>; bodyLength: number; bodySha256: string };

describe('the TLS listener', () => {
  test('ALPN offers h2 and http/1.1', async () => {
    assert.equal(await alpn(['h2', 'http/1.1']), 'h2');
    assert.equal(await alpn(['http/1.1']), 'http/1.1');
  });

  test('curl --http2 through the login flow, then proxy mode: the same decisions over h2', async () => {
    const jarFile = join(dir, 'curl-jar');
    const c = ['-b', jarFile, '-c', jarFile];
    // 1. Unauthenticated: redirected to start, which sets the flow cookie and goes to the IdP.
    const first = await curl(`${origin}/reports?month=11`, c);
    assert.equal(first.version, '2');
    assert.equal(first.status, 302);
    assert.match(first.headers.location![0]!, /\/outpost\.goauthentik\.io\/start\?rd=/);
    const start = await curl(new URL(first.headers.location![0]!, origin).href, c);
    assert.equal(start.version, '2');
    assert.equal(start.status, 302);
    const authorize = start.headers.location![0]!;
    assert.ok(authorize.startsWith(stack.idp.issuer), authorize);
    // 2. At the IdP (plain HTTP/1.1 on loopback): sign in, stop at the redirect back to Portcullis.
    const idpJar = new CookieJar();
    const loginPage = await followRedirects(authorize, { jar: idpJar });
    const form = parseForms(loginPage.final.body, loginPage.final.url).find((f) => f.inputTypes.password?.length)!;
    const posted = await submitForm(form, ALICE, { jar: idpJar });
    const back = await followRedirects(new URL(String(posted.headers.location), posted.url).href, { jar: idpJar, stopWhen: (r) => String(r.headers.location ?? '').startsWith(origin) });
    const callback = String(back.final.headers.location);
    // 3. The callback over h2 makes the session and returns to the original URL.
    const done = await curl(callback, c);
    assert.equal(done.version, '2');
    assert.equal(done.status, 302, done.body);
    assert.equal(done.headers.location![0], `${origin}/reports?month=11`);
    assert.ok(done.headers['set-cookie']?.some((v) => /^authentik_proxy_[0-9a-f]{8}=/.test(v) && /; Secure/i.test(v)));
    // 4. Proxied with the identity.
    const landed = await curl(`${origin}/reports?month=11`, [...c, '-H', 'X-authentik-username: mallory']);
    assert.equal(landed.version, '2');
    assert.equal(landed.status, 200, landed.body);
    const seen = seenBy(landed.body);
    assert.equal(seen.url, '/reports?month=11');
    assert.equal(seen.headers['x-authentik-username'], 'alice', 'the client-sent copy is replaced');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-host'], `${APP}:${stack.httpsPort}`);
    assert.equal(landed.headers['x-upstream-name']?.[0], 'upstream');
    // 5. Same answers without a session, over h2 and HTTP/1.1 alike.
    for (const version of ['--http2', '--http1.1']) {
      const anon = await curl(`${origin}/private`, ['-H', 'accept: application/json'], version);
      assert.equal(anon.status, 401);
      assert.equal(JSON.parse(anon.body).error, 'auth.required');
      const open = await curl(`${origin}/public/x`, ['-H', 'x-authentik-uid: spoofed'], version);
      assert.equal(open.status, 200);
      assert.equal(seenBy(open.body).headers['x-authentik-uid'], undefined);
    }
  });

  test('an h2 client gets exactly the identity headers upstream that an HTTP/1.1 client gets', async () => {
    const { cookie } = await aliceCookie();
    const same = { cookie, 'user-agent': 'same-agent', accept: 'application/json', 'x-authentik-groups': 'spoofed' };
    const viaH1 = await httpGet(`${origin}/compare?x=1`, { headers: same });
    const viaH2 = await h2Request(`${origin}/compare?x=1`, same);
    assert.equal(viaH1.status, 200, viaH1.body);
    assert.equal(viaH2.status, 200, viaH2.body.toString());
    const h1 = seenBy(viaH1.body).headers;
    const h2 = seenBy(viaH2.body).headers;
    assert.equal(h2['x-authentik-username'], 'alice');
    assert.equal(h2['x-authentik-groups'], 'admins|staff');
    for (const name of Object.keys(h2)) assert.ok(!name.startsWith(':'), `no pseudo-header upstream: ${name}`);
    // Everything the upstream received is the same, header by header (the h1 client's own
    // `connection` is hop-by-hop and never forwarded).
    assert.deepEqual(h2, h1);
  });

  test('bodies stream both ways over h2: an 8 MiB upload reaches the upstream intact, a 16 MiB answer arrives whole', async () => {
    const upload = Buffer.alloc(8 * 1024 * 1024, 0x5a);
    const up = await h2Request(`${origin}/public/upload`, { 'content-type': 'application/octet-stream' }, upload);
    assert.equal(up.status, 200);
    const seen = seenBy(up.body);
    assert.equal(seen.bodyLength, upload.length);
    assert.equal(seen.bodySha256, createHash('sha256').update(upload).digest('hex'));
    const down = await curl(`${origin}/public/../bytes?n=${16 * 1024 * 1024}`, ['--path-as-is']);
    // /public/../bytes is normalized to /bytes, which is not public: the decision holds over h2.
    assert.equal(down.status, 302);
    const { cookie } = await aliceCookie();
    const big = await h2Request(`${origin}/bytes?n=${16 * 1024 * 1024}`, { cookie });
    assert.equal(big.status, 200);
    assert.equal(big.body.length, 16 * 1024 * 1024);
    assert.equal(big.headers['content-length'], String(16 * 1024 * 1024));
  });

  test('no connection-specific header reaches an h2 client, whatever the upstream sends', async () => {
    const r = await curl(`https://${ODD}:${stack.httpsPort}/anything`);
    assert.equal(r.version, '2');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'one,two,/anything', 'the chunked answer arrives whole');
    for (const name of ['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'transfer-encoding', 'x-hop']) assert.equal(r.headers[name], undefined, name);
    assert.equal(r.headers['x-end-to-end']?.[0], 'kept');
    const h2 = await h2Request(`https://${ODD}:${stack.httpsPort}/node`);
    assert.equal(h2.status, 200);
    assert.equal(h2.body.toString(), 'one,two,/node');
  });

  test("a stage's answer with connection headers: sent to HTTP/1.1 clients, dropped for h2", async () => {
    const h2 = await curl(`${origin}/stage-answer`);
    assert.equal(h2.version, '2');
    assert.equal(h2.status, 200);
    assert.equal(h2.body, 'from a stage');
    assert.equal(h2.headers['x-stage']?.[0], 'answered');
    assert.equal(h2.headers.connection, undefined);
    assert.equal(h2.headers['keep-alive'], undefined);
    const h1 = await curl(`${origin}/stage-answer`, [], '--http1.1');
    assert.equal(h1.status, 200);
    assert.equal(h1.headers.connection?.[0], 'close');
  });

  test('a WebSocket upgrade (HTTP/1.1) on the h2 listener gets the identity to the upstream', async () => {
    const { cookie } = await aliceCookie();
    const ws = new WebSocket(`wss://${APP}:${stack.httpsPort}/socket`, { headers: { cookie }, rejectUnauthorized: false, lookup: loopback } as never);
    const hello = await new Promise<{ type: string; headers: Record<string, string> }>((resolve, reject) => {
      ws.once('message', (data) => resolve(JSON.parse(data.toString())));
      ws.once('error', reject);
    });
    assert.equal(hello.type, 'hello');
    assert.equal(hello.headers['x-authentik-username'], 'alice');
    const echo = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
    ws.send('ping over wss');
    assert.equal(await echo, 'ping over wss');
    ws.close();
  });

  test('a :authority and a different Host in one h2 request: 400', async () => {
    const r = await h2Request(`${origin}/public/x`, { ':authority': `${APP}:${stack.httpsPort}`, host: `${ODD}:${stack.httpsPort}`, accept: 'application/json' });
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.body.toString()).error, 'request.conflicting_host');
  });
});

describe('Chromium', () => {
  let browser: Browser | undefined;
  after(async () => browser?.close().catch(() => undefined));

  test('logs in through the IdP and loads the application and its assets over h2', async () => {
    browser = await launchChromium();
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    await page.goto(`${origin}/app?from=chromium`);
    await page.waitForSelector('#username');
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice');
    const target = `${origin}/app?from=chromium`;
    const [landed] = await Promise.all([page.waitForResponse((r) => r.url() === target && r.request().isNavigationRequest() && r.status() === 200), page.click('#login')]);
    const seen = (await landed.json()) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-authentik-username'], 'alice');
    assert.equal(await page.evaluate(() => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).nextHopProtocol), 'h2');
    // Twelve assets at once, multiplexed on the one connection.
    const protocols = await page.evaluate(async (base) => {
      await Promise.all(Array.from({ length: 12 }, (_, i) => fetch(`${base}/asset-${i}.js`).then((r) => r.text())));
      return (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).filter((e) => e.name.includes('/asset-')).map((e) => e.nextHopProtocol);
    }, origin);
    assert.equal(protocols.length, 12);
    assert.ok(protocols.every((p) => p === 'h2'), JSON.stringify(protocols));
    await context.close();
  });
});

describe('listeners.https_http2: false', () => {
  test('ALPN offers http/1.1 only, and curl --http2 gets HTTP/1.1', async () => {
    const port = await freePort();
    const plain = await startStack({
      https: true,
      httpsPort: port,
      providers: [{ name: 'app', host: APP, external_host: `https://${APP}:${port}`, extra: { skip_path_regex: '^/' } }],
      outpost: { listeners: { http: `127.0.0.1:${await freePort()}`, https: `127.0.0.1:${port}`, https_http2: false } },
    });
    try {
      assert.equal(await alpn(['h2', 'http/1.1'], port), 'http/1.1');
      const r = await curl(`https://${APP}:${port}/x`);
      assert.equal(r.version, '1.1');
      assert.equal(r.status, 200);
    } finally {
      await plain.close();
    }
  });
});

