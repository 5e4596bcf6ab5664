// Odd answers from the upstream and odd uploads from the client, in proxy mode: a hostile
// upstream on a raw socket (103 Early Hints, 204/304 with Content-Length, headers named by
// Connection, an answer cut short) and `Expect: 100-continue` uploads to the real test upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';

const ALICE = { username: 'alice', password: 'alice' };

/**
 * Raw answers by path. The hostile upstream reads a request's head, writes the script byte for
 * byte and, for `close` scripts, ends the connection (the rest keep it alive).
 */
const SCRIPTS: Record<string, { raw: string; close?: boolean }> = {
  '/hints': { raw: 'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello' },
  '/processing': { raw: 'HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' },
  '/no-content': { raw: 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Kind: nc\r\n\r\n' },
  '/not-modified': { raw: 'HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: "v1"\r\n\r\n' },
  '/connection-listed': {
    raw: 'HTTP/1.1 200 OK\r\nConnection: close, X-Upstream-Secret, x-hop\r\nX-Upstream-Secret: s3cret\r\nX-Hop: 1\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok',
    close: true,
  },
  '/cut': { raw: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly part', close: true },
};

let stack: Stack;
let hostile: net.Server;
let jar: CookieJar;
const logLines: string[] = [];

before(async () => {
  hostile = net.createServer((socket) => {
    let buffered = '';
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const path = (head.split(' ')[1] ?? '/').split('?')[0]!;
        const script = SCRIPTS[path] ?? { raw: 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n' };
        socket.write(script.raw);
        if (script.close) socket.end();
      }
    });
  });
  await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', () => resolve()));
  const hostilePort = (hostile.address() as net.AddressInfo).port;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString('utf8'));
      cb();
    },
  });
  stack = await startStack({
    outpostOptions: { logger: pino({ level: 'info' }, sink) },
    providers: [
      { name: 'hostile', host: 'hostile.localtest', internal_host: `http://127.0.0.1:${hostilePort}` },
      { name: 'app', host: 'app.localtest' },
    ],
  });
  jar = new CookieJar();
  await loginThrough(stack.url('hostile.localtest', '/'), ALICE, { jar });
  await loginThrough(stack.url('app.localtest', '/'), ALICE, { jar });
});

after(async () => {
  await stack.close();
  await new Promise<void>((resolve) => hostile.close(() => resolve()));
});

interface RawResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  informational: { status: number; headers: http.IncomingHttpHeaders }[];
}

/** One request with Node's client, recording 1xx answers; rejects when the answer is cut. */
function request(host: string, path: string, opts: { method?: string; headers?: Record<string, string>; agent?: http.Agent } = {}): Promise<RawResult> {
  const url = new URL(stack.url(host, path));
  return new Promise((resolve, reject) => {
    const informational: RawResult['informational'] = [];
    const req = http.request(
      { host: '127.0.0.1', port: stack.port, path, method: opts.method ?? 'GET', agent: opts.agent ?? false, headers: { host: url.host, cookie: jar.header(url), ...opts.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('aborted', () => reject(new Error('aborted')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), informational }));
      },
    );
    req.on('information', (info) => informational.push({ status: info.statusCode, headers: info.headers }));
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

test('headers the upstream names in its Connection header never reach the client', async () => {
  const res = await request('hostile.localtest', '/connection-listed');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'ok');
  assert.equal(res.headers['x-kept'], 'yes');
  assert.equal(res.headers['x-upstream-secret'], undefined, 'listed in Connection: hop-by-hop');
  assert.equal(res.headers['x-hop'], undefined, 'listed in Connection, in another case');
});

test('103 Early Hints before the answer: hints passed on, then the answer intact', async () => {
  const res = await request('hostile.localtest', '/hints');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'hello');
  assert.equal(res.headers['content-type'], 'text/plain');
  assert.deepEqual(
    res.informational.map((i) => [i.status, i.headers.link]),
    [[103, '</style.css>; rel=preload; as=style']],
  );
});

test('other 1xx answers of the upstream are dropped, the answer follows', async () => {
  const res = await request('hostile.localtest', '/processing');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'ok');
  assert.deepEqual(res.informational, []);
});

test('204 and 304 with a Content-Length: a complete answer, and the client connection stays usable', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const nc = await request('hostile.localtest', '/no-content', { agent });
    assert.equal(nc.status, 204);
    assert.equal(nc.headers['x-kind'], 'nc');
    assert.equal(nc.headers['content-length'], undefined, 'a 204 carries no Content-Length');
    assert.equal(nc.body, '');
    const nm = await request('hostile.localtest', '/not-modified', { agent });
    assert.equal(nm.status, 304);
    assert.equal(nm.headers.etag, '"v1"');
    assert.equal(nm.body, '');
    // The same client connection then carries an ordinary request.
    const next = await request('app.localtest', '/after', { agent });
    assert.equal(next.status, 200);
    assert.equal(JSON.parse(next.body).url, '/after');
  } finally {
    agent.destroy();
  }
});

test('an answer cut by the upstream is cut for the client too, and logged with the request id', async () => {
  await assert.rejects(request('hostile.localtest', '/cut'), /aborted|socket hang up|ECONNRESET/);
  // The log line is written when the upstream's end is seen; give it a moment.
  let cut: Record<string, unknown> | undefined;
  for (let i = 0; i < 100 && cut === undefined; i++) {
    cut = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'upstream answer cut: client connection closed');
    if (cut === undefined) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(cut, 'a warning for the cut answer');
  assert.match(String(cut.reqId), /^[0-9a-f-]{36}$/);
  assert.equal(cut.status, 200);
  assert.equal(cut.path, '/cut');
});

/** An upload with `Expect: 100-continue`: the body is sent only when the server says continue. */
function uploadWithExpect(host: string, path: string, body: Buffer, withCookie: boolean): Promise<{ status: number; body: string; continued: boolean }> {
  const url = new URL(stack.url(host, path));
  return new Promise((resolve, reject) => {
    let continued = false;
    const headers: Record<string, string> = { host: url.host, expect: '100-continue', 'content-type': 'application/octet-stream', 'content-length': String(body.length) };
    if (withCookie) headers.cookie = jar.header(url);
    const req = http.request({ host: '127.0.0.1', port: stack.port, path, method: 'PUT', agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), continued }));
    });
    req.on('continue', () => {
      continued = true;
      req.end(body);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.flushHeaders();
  });
}

test('Expect: 100-continue uploads: the client is told to continue and the body is proxied', async () => {
  const body = Buffer.alloc(256 * 1024 + 3, 0x7a);
  const res = await uploadWithExpect('app.localtest', '/upload', body, true);
  assert.equal(res.status, 200, res.body);
  assert.equal(res.continued, true);
  const seen = JSON.parse(res.body) as { method: string; bodyLength: number; bodySha256: string; headers: Record<string, string> };
  assert.equal(seen.method, 'PUT');
  assert.equal(seen.bodyLength, body.length);
  assert.equal(seen.bodySha256, createHash('sha256').update(body).digest('hex'));
  assert.equal(seen.headers.expect, undefined, 'the expectation was met by Portcullis');
});

test('Expect: 100-continue without a session: answered before the body is asked for', async () => {
  const before = stack.upstream.requests.length;
  const res = await uploadWithExpect('app.localtest', '/upload', Buffer.alloc(4096, 0x61), false);
  assert.equal(res.status, 302);
  assert.equal(res.continued, false, 'never told to send the body');
  assert.equal(stack.upstream.requests.length, before);
  const ok = await httpGet(stack.url('app.localtest', '/outpost.goauthentik.io/ping'));
  assert.equal(ok.status, 204);
});
