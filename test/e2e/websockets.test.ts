// WebSockets follow the session: sign-out closes the user's open WebSockets, on this replica at
// once and on another replica sharing the store (a real Redis) at its next session check; idle
// sockets are closed; the outpost holds at most outpost.websockets.max_open of them.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parse, stringify } from 'yaml';
import WebSocket from 'ws';
import { startStack, quietLogger, freePort, type Stack } from '../support/stack.js';
import { startRedis, type RunningRedis } from '../support/redis.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';

const APP = 'app.localtest';
const ALICE = { username: 'alice', password: 'alice' };

async function login(stack: Stack): Promise<string> {
  const jar = new CookieJar();
  await loginThrough(stack.url(APP, '/'), ALICE, { jar });
  const cookie = jar.header(new URL(stack.url(APP, '/')));
  assert.ok(cookie);
  return cookie;
}

interface OpenSocket {
  ws: WebSocket;
  closed: Promise<{ code: number; reason: string }>;
}

/** Opens a WebSocket through Portcullis (port) as APP with this Cookie; resolves once the upstream said hello. */
function openSocket(port: number, hostPort: number, cookie?: string): Promise<OpenSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`, { headers: { host: `${APP}:${hostPort}`, ...(cookie ? { cookie } : {}) } });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    ws.once('message', () => resolve({ ws, closed }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** The upgrade's answer status when it is refused (101 when it is accepted). */
function upgradeStatus(port: number, cookie: string): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`, { headers: { host: `${APP}:${port}`, cookie } });
  return new Promise((resolve) => {
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => {
      resolve(101);
      ws.close();
    });
    ws.once('error', () => resolve(-1));
  });
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);

describe('sign-out, on this replica and on another sharing the store', () => {
  let redis: RunningRedis;
  let stack: Stack;
  let replicaB: Outpost;
  let portB: number;

  before(async () => {
    redis = await startRedis();
    stack = await startStack({
      providers: [{ name: 'app', host: APP }],
      outpost: { session_store: { type: 'redis', url: redis.url, key_prefix: 'ws:' }, websockets: { session_check_interval: 1, idle_timeout: 120 } },
    });
    portB = await freePort();
    const config = parse(stack.configYaml) as { outpost: { listeners: { http: string } } };
    config.outpost.listeners.http = `127.0.0.1:${portB}`;
    replicaB = await Outpost.create(parseConfig(stringify(config), { source: 'replica B' }), { logger: quietLogger() });
    await replicaB.listen();
  });
  after(async () => {
    await replicaB?.close();
    await stack?.close();
    await redis?.stop();
  });

  test("sign-out closes every open WebSocket of the user's sessions at once, and no one else's", async () => {
    const cookie = await login(stack);
    const otherSession = await login(stack); // the same user on another device: ended too
    const a1 = await openSocket(stack.port, stack.port, cookie);
    const a2 = await openSocket(stack.port, stack.port, otherSession);
    const bob = new CookieJar();
    await loginThrough(stack.url(APP, '/'), { username: 'bob', password: 'bob' }, { jar: bob });
    const b = await openSocket(stack.port, stack.port, bob.header(new URL(stack.url(APP, '/'))));

    const out = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'), { headers: { cookie } });
    assert.equal(out.status, 302);
    for (const s of [a1, a2]) {
      const closed = await within(s.closed, 1000, 'the signed-out socket closes');
      assert.equal(closed.code, 1008);
      assert.equal(closed.reason, 'signed out');
    }
    assert.equal(b.ws.readyState, WebSocket.OPEN, "another user's socket stays open");
    b.ws.close();
  });

  test('a sign-out on another replica closes the socket at the next session check', async () => {
    const cookie = await login(stack);
    const onB = await openSocket(portB, stack.port, cookie);
    const out = await httpGet(stack.url(APP, '/outpost.goauthentik.io/sign_out'), { headers: { cookie } });
    assert.equal(out.status, 302);
    // session_check_interval is 1 s: closed well within 3 s.
    const closed = await within(onB.closed, 3000, 'the socket on replica B closes');
    assert.equal(closed.code, 1008);
    assert.equal(closed.reason, 'session ended');
  });
});

describe('idle timeout and the outpost-wide limit', () => {
  let stack: Stack;
  let cookie: string;

  before(async () => {
    stack = await startStack({ providers: [{ name: 'app', host: APP }], outpost: { websockets: { idle_timeout: 1, max_open: 2 } } });
    cookie = await login(stack);
  });
  after(async () => {
    await stack?.close();
  });

  test('an idle WebSocket is closed; one that talks stays open', async () => {
    const idle = await openSocket(stack.port, stack.port, cookie);
    const busy = await openSocket(stack.port, stack.port, cookie);
    const timer = setInterval(() => busy.ws.send('still here'), 300);
    try {
      const closed = await within(idle.closed, 2500, 'the idle socket closes');
      assert.equal(closed.code, 1000);
      assert.equal(closed.reason, 'idle timeout');
      assert.equal(busy.ws.readyState, WebSocket.OPEN, 'messages count as activity');
    } finally {
      clearInterval(timer);
      busy.ws.close();
      await busy.closed;
    }
  });

  test('beyond max_open an upgrade gets 503; a freed slot is usable again', async () => {
    const keepAlive: NodeJS.Timeout[] = [];
    const first = await openSocket(stack.port, stack.port, cookie);
    const second = await openSocket(stack.port, stack.port, cookie);
    for (const s of [first, second]) keepAlive.push(setInterval(() => s.ws.send('x'), 300));
    try {
      const before = stack.upstream.requests.length;
      assert.equal(await upgradeStatus(stack.port, cookie), 503);
      assert.equal(stack.upstream.requests.length, before, 'the refused upgrade never reached the upstream');
      first.ws.close();
      await first.closed;
      await new Promise((r) => setTimeout(r, 100));
      const third = await openSocket(stack.port, stack.port, cookie);
      third.ws.close();
      await third.closed;
    } finally {
      for (const t of keepAlive) clearInterval(t);
      second.ws.close();
    }
  });
});
