// Trust at the edges, proxy mode (issue 8): what a hostile client or hostile claims can put into
// the headers the upstream receives. Real IdP (whose users carry hostile ak_proxy claims), real
// upstream, raw sockets where a normal HTTP client would tidy the input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';

const APP = 'app.localtest';
const OTHER = 'other.localtest';
const FWD = 'fwd.localtest';
const UNICODE = 'ünïcødé 日本 €';
const HOSTILE_NAMES = [
  'Set-Cookie',
  'Location',
  'Content-Length',
  'Transfer-Encoding',
  'Connection',
  'Upgrade',
  'Expect',
  'Host',
  'TE',
  'Trailer',
  'Keep-Alive',
  'Proxy-Authorization',
  'Proxy-Foo',
  'X-Envoy-Auth-Headers-To-Remove',
  'Cache-Control',
];
const MALLORY = { username: 'mallory', password: 'mallory' };
const BOB = { username: 'bob', password: 'bob' };

let stack: Stack;
const logLines: string[] = [];

before(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString('utf8'));
      cb();
    },
  });
  stack = await startStack({
    // 127.0.0.1 (the test client, standing in for a reverse proxy at forward-auth endpoints) and
    // 127.0.0.2 are trusted proxies; raw requests from 127.0.0.3 come from an untrusted peer.
    outpost: { trusted_proxies: ['127.0.0.1/32', '127.0.0.2/32'] },
    outpostOptions: { logger: pino({ level: 'warn' }, sink) },
    providers: [
      { name: 'app', host: APP, extra: { skip_path_regex: '^/public/', additional_header_names: ['X-Declared'] } },
      { name: 'other', host: OTHER },
      { name: 'fwd', host: FWD, mode: 'forward_single', extra: { skip_path_regex: '^/public/' } },
    ],
    users: [
      {
        username: 'mallory',
        password: 'mallory',
        email: 'mallory@example.com',
        ak_proxy: {
          user_attributes: {
            additionalHeaders: {
              'X-Team': 'admins',
              'X-Unicode': UNICODE,
              'X-Latin': 'ü',
              ...Object.fromEntries(HOSTILE_NAMES.map((n) => [n, n === 'Expect' ? '100-continue' : n === 'Content-Length' ? '5' : 'evil=1; Path=/'])),
            },
          },
        },
      },
      { username: 'bob', password: 'bob', email: 'bob@example.com' },
    ],
  });
});
after(async () => stack?.close());

interface Seen {
  url: string;
  headers: Record<string, string>;
}
function seen(res: HttpResult): Seen {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 300)}`);
  return JSON.parse(res.body) as Seen;
}
async function login(host: string, user: { username: string; password: string }, path = '/'): Promise<CookieJar> {
  const jar = new CookieJar();
  await loginThrough(stack.url(host, path), user, { jar });
  return jar;
}
/** The raw header values the upstream received for `name` on its latest request, read as UTF-8 bytes. */
function upstreamBytes(name: string): string[] {
  const raw = stack.upstream.requests.at(-1)!.rawHeaders;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(Buffer.from(raw[i + 1]!, 'latin1').toString('utf8'));
  return out;
}

/** One HTTP/1.1 exchange on a raw socket (from `localAddress`): the response head as text. */
function rawExchange(request: string, localAddress = '127.0.0.3'): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: stack.port, localAddress });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw exchange timed out')));
    socket.write(request);
  });
}

// -- item 1: additionalHeaders names cannot be forged ------------------------------------------

test('a declared additional header name is removed from every client request, before any login', async () => {
  const forged = seen(await httpGet(stack.url(APP, '/public/x'), { headers: { 'X-Declared': 'forged', 'x-team': 'forged-before-any-login' } }));
  assert.equal(forged.headers['x-declared'], undefined);
  // The documented window: a name neither declared nor ever seen at a login is not known yet.
  assert.equal(forged.headers['x-team'], 'forged-before-any-login');
});

test('a name seen at any login is removed from every request of the outpost, anonymous or signed in, and survives a restart', async () => {
  const mallory = await login(APP, MALLORY);
  assert.ok(logLines.some((l) => /not declared in additional_header_names/.test(l) && /"x-team"/.test(l)), 'the undeclared name is warned about');
  assert.equal(logLines.some((l) => /not declared/.test(l) && /"x-declared"/.test(l)), false);
  const own = seen(await httpGet(stack.url(APP, '/private'), { jar: mallory, headers: { 'X-Team': 'forged' } }));
  assert.deepEqual(upstreamBytes('x-team'), ['admins'], 'her own value only');
  assert.equal(own.headers['x-team'], 'admins');

  const bob = await login(APP, BOB);
  for (const [jar, path, host] of [
    [undefined, '/public/x', APP],
    [bob, '/private', APP],
    [bob, '/public/x', APP],
    [await login(OTHER, BOB), '/anything', OTHER],
  ] as const) {
    for (const name of ['X-Team', 'x-TEAM', 'X_Team']) {
      const s = seen(await httpGet(stack.url(host, path), { jar, headers: { [name]: 'forged' } }));
      assert.equal(s.headers['x-team'], undefined, `${name} on ${host}${path}`);
      assert.equal(s.headers['x_team'], undefined, `${name} on ${host}${path}`);
    }
  }
  await stack.stopOutpost();
  await stack.restartOutpost();
  const afterRestart = seen(await httpGet(stack.url(APP, '/public/x'), { headers: { 'X-Team': 'forged' } }));
  assert.equal(afterRestart.headers['x-team'], undefined, 'the name was kept with the sessions');
});

// -- item 2: cookies of every provider are removed ---------------------------------------------

test("the cookies of every provider of the outpost, and their login-flow cookies, never reach the upstream", async () => {
  const names = stack.outpost.providers.all.flatMap((p) => [p.cookieName, p.flowCookieName]);
  assert.equal(names.length, 6);
  const cookie = ['keep=1', ...names.map((n) => `${n}=replayable`), 'also=2'].join('; ');
  const s = seen(await httpGet(stack.url(APP, '/public/x'), { headers: { cookie } }));
  assert.equal(s.headers.cookie, 'keep=1; also=2');
  const only = seen(await httpGet(stack.url(APP, '/public/x'), { headers: { cookie: names.map((n) => `${n}=x`).join('; ') } }));
  assert.equal(only.headers.cookie, undefined);
});

// -- items 5 and 16: hostile claims ----------------------------------------------------------

test('claims cannot add framing or control headers: refused at login with a warning; the user still works', async () => {
  const mallory = await login(APP, MALLORY);
  const warned = logLines.filter((l) => /ak_proxy claims partly ignored/.test(l)).join('\n');
  for (const n of HOSTILE_NAMES) assert.match(warned, new RegExp(`additionalHeaders\\[\\\\"${n}\\\\"\\]: [^"]*cannot be set from claims`, 'i'), n);
  // Expect once made every request of this user a 502; the body of a POST reaches the upstream.
  const res = await httpGet(stack.url(APP, '/private'), { jar: mallory, method: 'POST', body: 'a=1&b=2' });
  const s = seen(res) as Seen & { bodyLength: number };
  assert.equal(s.bodyLength, 7);
  const raw = stack.upstream.requests.at(-1)!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  for (const n of ['set-cookie', 'location', 'expect', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-authorization', 'proxy-foo', 'x-envoy-auth-headers-to-remove']) {
    assert.equal(raw.includes(n), false, `${n} reached the upstream`);
  }
  assert.equal(s.headers.host, '127.0.0.1:' + new URL(stack.upstream.url).port);
  assert.equal(s.headers['content-length'], '7');
  assert.equal(([] as string[]).concat(res.headers['set-cookie'] ?? []).some((c) => c.startsWith('evil')), false);

  // Forward auth: the answer nginx copies Set-Cookie from carries none of them.
  const fwd = await login(FWD, MALLORY, '/outpost.goauthentik.io/start?rd=' + encodeURIComponent(`http://${FWD}:${stack.port}/x`));
  const answer = await httpGet(stack.url(FWD, '/outpost.goauthentik.io/auth/nginx'), { jar: fwd, headers: { 'x-original-url': `http://${FWD}:${stack.port}/private` } });
  assert.equal(answer.status, 200);
  assert.equal(answer.headers['x-authentik-email'], 'mallory@example.com');
  assert.equal(answer.headers['x-team'], 'admins');
  for (const n of ['set-cookie', 'location', 'expect', 'proxy-foo', 'x-envoy-auth-headers-to-remove']) assert.equal(answer.headers[n], undefined, n);
  assert.equal(answer.headers['cache-control'], 'no-store');
  // Non-Latin-1 values: UTF-8 bytes on the forward-auth answer too.
  assert.equal(Buffer.from(String(answer.headers['x-unicode']), 'latin1').toString('utf8'), UNICODE);
});

test('non-Latin-1 additionalHeaders values reach the upstream intact, as UTF-8 bytes', async () => {
  const mallory = await login(APP, MALLORY);
  seen(await httpGet(stack.url(APP, '/private'), { jar: mallory }));
  assert.deepEqual(upstreamBytes('x-unicode'), [UNICODE]);
  assert.deepEqual(upstreamBytes('x-latin'), ['ü'], 'a Latin-1 character is sent as UTF-8 too, once');
});

// -- item 7: ambiguous requests ----------------------------------------------------------------

test('two Host headers: 400, in proxy mode and at forward-auth endpoints', async () => {
  const before = stack.upstream.requests.length;
  for (const [path, second] of [
    ['/public/x', `evil.localtest`],
    ['/public/x', `${APP}:${stack.port}`],
    ['/outpost.goauthentik.io/auth/nginx', `${FWD}:${stack.port}`],
  ] as const) {
    const host = path.includes('/auth/') ? `${FWD}:${stack.port}` : `${APP}:${stack.port}`;
    const res = await rawExchange(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nX-Original-URL: http://${FWD}:${stack.port}/public/x\r\nhOsT: ${second}\r\nConnection: close\r\n\r\n`);
    assert.equal(res.status, 400, `${path} with a second Host ${second}: ${res.text.slice(0, 200)}`);
  }
  assert.equal(stack.upstream.requests.length, before, 'nothing was proxied');
  const one = await rawExchange(`GET /public/x HTTP/1.1\r\nHost: ${APP}:${stack.port}\r\nConnection: close\r\n\r\n`);
  assert.equal(one.status, 200);
});

const REWRITE_AND_ADDRESS = {
  'X-Original-URL': '/admin',
  'X-Rewrite-URL': '/admin',
  'X-Original-URI': '/admin',
  'X-Real-IP': '10.9.9.9',
  'True-Client-IP': '10.9.9.9',
  'X-Client-IP': '10.9.9.9',
  'X-Cluster-Client-IP': '10.9.9.9',
  'CF-Connecting-IP': '10.9.9.9',
  'Fastly-Client-IP': '10.9.9.9',
  'X-Forwarded-Ssl': 'on',
  'X-Forwarded-Scheme': 'https',
  'X-Url-Scheme': 'https',
  'Front-End-Https': 'on',
  Forwarded: 'for=10.9.9.9;proto=https',
  'X-Forwarded-Port': '443',
  'X-Forwarded-Prefix': '/admin',
  'X-Forwarded-Server': 'evil',
  'X-Forwarded-Uri': '/admin',
  'X-Forwarded-Method': 'DELETE',
  'X-Original-Host': 'evil.localtest',
  'X-Host': 'evil.localtest',
};

test('rewrite and client-address headers are not passed upstream from a peer that is not a trusted proxy', async () => {
  const lines = Object.entries(REWRITE_AND_ADDRESS).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const res = await rawExchange(`GET /public/x HTTP/1.1\r\nHost: ${APP}:${stack.port}\r\n${lines}X_Real_IP: 10.9.9.9\r\nConnection: close\r\n\r\n`);
  assert.equal(res.status, 200, res.text.slice(0, 300));
  const got = stack.upstream.requests.at(-1)!.headers;
  for (const name of Object.keys(REWRITE_AND_ADDRESS)) assert.equal(got[name.toLowerCase()], undefined, name);
  assert.equal(got['x_real_ip'], undefined);
  assert.equal(got['x-forwarded-for'], '127.0.0.3');
  assert.equal(got['x-forwarded-proto'], 'http');

  // From the trusted proxy (127.0.0.2) the client-address headers pass; the rewrite headers never do.
  const trusted = await rawExchange(`GET /public/x HTTP/1.1\r\nHost: ${APP}:${stack.port}\r\n${lines}X-Forwarded-For: 10.9.9.9\r\nConnection: close\r\n\r\n`, '127.0.0.2');
  assert.equal(trusted.status, 200, trusted.text.slice(0, 300));
  const viaProxy = stack.upstream.requests.at(-1)!.headers;
  for (const name of ['X-Original-URL', 'X-Rewrite-URL', 'X-Original-URI', 'X-Forwarded-Uri', 'X-Forwarded-Method', 'X-Original-Host', 'X-Host']) {
    assert.equal(viaProxy[name.toLowerCase()], undefined, name);
  }
  assert.equal(viaProxy['x-real-ip'], '10.9.9.9');
  assert.equal(viaProxy['forwarded'], 'for=10.9.9.9;proto=https');
  assert.equal(viaProxy['x-forwarded-for'], '10.9.9.9, 127.0.0.2');
});
