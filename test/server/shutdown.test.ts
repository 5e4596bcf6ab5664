// Stopping cleanly and readiness, in-process: no new connections, readiness 503 while draining,
// the request in flight completes, WebSockets end with 1001, a deadline cuts what is left; and
// readiness waits for the identity provider's discovery.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import WebSocket from 'ws';
import { startStack, freePort, quietLogger, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { startIdentityProvider, DEMO_USERS } from '../../src/demo/identity-provider.js';
import { startUpstream } from '../support/upstream.js';

const ALICE = { username: 'alice', password: 'alice' };
const stacks: Stack[] = [];
after(async () => {
  for (const s of stacks) await s.close();
});

async function signedInStack(): Promise<{ stack: Stack; jar: CookieJar }> {
  const stack = await startStack({ providers: [{ name: 'app', host: 'app.localtest' }] });
  stacks.push(stack);
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url('app.localtest', '/'), ALICE, { jar });
  assert.equal(final.status, 200);
  return { stack, jar };
}

/** Raw HTTP/1.1 on one connection: several requests pipelined, every byte of the answers. */
function pipelined(port: number, requests: string[]): { socket: net.Socket; text: Promise<string> } {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(requests.join(''));
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const text = new Promise<string>((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks).toString('latin1'))));
  return { socket, text };
}

test('shutdown: no new connections, readiness 503, the slow answer completes, WebSockets close with 1001', async () => {
  const { stack, jar } = await signedInStack();
  const host = `app.localtest:${stack.port}`;
  const cookie = jar.header(new URL(stack.url('app.localtest')))!;
  const ws = new WebSocket(`ws://127.0.0.1:${stack.port}/socket`, { headers: { host, cookie } });
  await new Promise((resolve, reject) => {
    ws.once('message', resolve);
    ws.once('error', reject);
  });
  const wsClosed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  // A slow request; behind it, on the same connection and once the shutdown has begun, a readiness probe.
  const conn = pipelined(stack.port, [`GET /slow?ms=1200 HTTP/1.1\r\nhost: ${host}\r\ncookie: ${cookie}\r\n\r\n`]);
  await new Promise((r) => setTimeout(r, 300));

  const started = Date.now();
  const done = stack.outpost.shutdown(10_000);
  await new Promise((r) => setTimeout(r, 100));
  conn.socket.write(`GET /outpost.goauthentik.io/ready HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
  // New connections are refused at once.
  await assert.rejects(httpGet(stack.url('app.localtest', '/outpost.goauthentik.io/ping')), /ECONNREFUSED/);
  assert.deepEqual(stack.outpost.notReady(), ['draining']);
  // The WebSocket is told the server is going away.
  assert.deepEqual(await wsClosed, { code: 1001, reason: 'server shutting down' });

  const answers = await conn.text;
  const [first, second] = answers.split(/(?=HTTP\/1\.1 )/);
  assert.match(first!, /^HTTP\/1\.1 200 /, 'the request in flight completed');
  assert.match(first!, /"url":"\/slow\?ms=1200"/);
  assert.match(second!, /^HTTP\/1\.1 503 /, 'readiness answers 503 while draining');
  assert.match(second!, /connection: close/i);
  assert.match(second!, /"waiting_for":\["draining"\]/);
  assert.deepEqual(await done, { cut: 0 });
  assert.ok(Date.now() - started >= 800, 'the shutdown waited for the slow answer');
});

test('shutdown: after outpost.shutdown_timeout the requests still in flight are cut', async () => {
  const { stack, jar } = await signedInStack();
  const slow = httpGet(stack.url('app.localtest', '/slow?ms=20000'), { jar }).then(
    (r) => `answered ${r.status}`,
    (err: Error) => `cut: ${err.message}`,
  );
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  assert.deepEqual(await stack.outpost.shutdown(400), { cut: 1 });
  assert.ok(Date.now() - started < 3000, `bounded by the timeout (${Date.now() - started} ms)`);
  assert.match(await slow, /^cut: socket hang up/);
});

test('readiness is 503 until every provider\'s discovery succeeded; ping answers all along', async () => {
  const idpPort = await freePort();
  const port = await freePort();
  const upstream = await startUpstream();
  const yaml = `
outpost:
  listeners: { http: "127.0.0.1:${port}" }
  session_store: { type: embedded, path: null }
  log_level: silent
providers:
  - name: app
    issuer: http://127.0.0.1:${idpPort}
    client_id: app
    client_secret: app-secret
    cookie_secret: ${'c'.repeat(32)}
    external_host: http://app.localtest:${port}
    internal_host: ${upstream.url}
`;
  const outpost = await Outpost.create(parseConfig(yaml.replace('path: null', `path: ${JSON.stringify(`/tmp/portcullis-ready-${port}.jsonl`)}`), { source: 'ready test' }), { logger: quietLogger() });
  await outpost.listen();
  try {
    const url = (path: string) => `http://app.localtest:${port}${path}`;
    assert.equal((await httpGet(url('/outpost.goauthentik.io/ping'))).status, 204);
    const notReady = await httpGet(url('/outpost.goauthentik.io/ready'));
    assert.equal(notReady.status, 503);
    assert.deepEqual(JSON.parse(notReady.body), { ready: false, waiting_for: ['discovery'] });
    assert.equal(notReady.headers['cache-control'], 'no-store');
    // The identity provider comes up; discovery is retried without any login having to ask.
    const idp = await startIdentityProvider({ port: idpPort, clients: [{ client_id: 'app', client_secret: 'app-secret', redirect_uris: [url('/outpost.goauthentik.io/callback?X-authentik-auth-callback=true')] }], users: DEMO_USERS });
    try {
      const deadline = Date.now() + 15_000;
      let status = 0;
      while (Date.now() < deadline && (status = (await httpGet(url('/outpost.goauthentik.io/ready'))).status) !== 204) await new Promise((r) => setTimeout(r, 250));
      assert.equal(status, 204);
      assert.equal((await httpGet(url('/outpost.goauthentik.io/ready'), { method: 'HEAD' })).status, 204);
    } finally {
      await outpost.close();
      await idp.close();
    }
  } finally {
    await outpost.close();
    await upstream.close();
  }
});
