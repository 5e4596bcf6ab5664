// The outpost's log lines: one request-id field (reqId) on the access line and on the stages'
// lines of that request, no query strings, HTTPS listeners named https, and the pretty format.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough } from '../support/browserless.js';
import { createLogger, prettyLine } from '../../src/server/log-format.js';

const APP = 'app.localtest';
const lines: string[] = [];
const sink = new PassThrough();
sink.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));

let stack: Stack;
after(() => stack?.close());

test('access lines and stage lines share one request-id field; no query string; HTTPS is https', async () => {
  stack = await startStack({
    providers: [{ name: 'app', host: APP }],
    https: true,
    outpostOptions: { logger: createLogger({ log_level: 'info', log_format: 'json', name: 'logs test' }, sink) },
  });
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(APP, '/reports?secret=s3cr3t'), { username: 'alice', password: 'alice' }, { jar });
  assert.equal(final.status, 200);
  await new Promise((r) => setTimeout(r, 50));
  const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);

  for (const line of lines) {
    assert.doesNotMatch(line, /"requestId"/, line);
    assert.ok((line.match(/"reqId"/g) ?? []).length <= 1, `reqId twice: ${line}`);
    assert.doesNotMatch(line, /s3cr3t/, 'a query string reached the log');
  }
  const requests = entries.filter((e) => e.msg === 'request');
  assert.ok(requests.length >= 2);
  for (const r of requests) {
    assert.deepEqual(Object.keys(r).sort(), ['entry', 'host', 'level', 'method', 'ms', 'msg', 'outpost', 'path', 'provider', 'remote', 'reqId', 'status', 'time'].filter((k) => r[k] !== undefined).sort());
    assert.equal(typeof r.reqId, 'string');
  }
  const first = requests[0]!;
  assert.deepEqual([first.method, first.host, first.path, first.status, first.provider, first.entry], ['GET', `${APP}:${stack.port}`, '/reports', 302, 'app', 'proxy']);
  // The login line of the callback request carries that request's id, under the same name.
  const login = entries.find((e) => e.msg === 'login completed')!;
  assert.ok(login, lines.join('\n'));
  const callback = requests.find((r) => String(r.path).endsWith('/callback'))!;
  assert.equal(login.reqId, callback.reqId);
  // No listener is logged with the wrong scheme.
  assert.ok(!lines.some((l) => l.includes(`http://127.0.0.1:${stack.httpsPort}`)), lines.filter((l) => l.includes('listening')).join('\n'));
  const ping = await httpGet(`https://127.0.0.1:${stack.httpsPort}/outpost.goauthentik.io/ping`);
  assert.equal(ping.status, 204);
});

test('log_format pretty: one readable line per entry, the access line reading like one', () => {
  const access = prettyLine(JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 1, 12, 0, 0, 5), outpost: 'o', reqId: 'r-1', method: 'GET', host: 'app.example.com', path: '/x', status: 200, ms: 1.25, provider: 'app', entry: 'proxy', remote: '10.0.0.1', msg: 'request' }));
  assert.equal(access, '12:00:00.005 INFO  request GET app.example.com/x 200 1.25ms  provider=app entry=proxy remote=10.0.0.1 reqId=r-1\n');
  const warn = prettyLine(JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 1, 12, 0, 1), msg: 'login failed', code: 'oidc.state', detail: 'state "x" expired' }));
  assert.equal(warn, '12:00:01.000 WARN  login failed  code=oidc.state detail="state \\"x\\" expired"\n');
  // Not JSON: passed through as it is.
  assert.equal(prettyLine('plain text'), 'plain text\n');
});

test('log_format pretty through the logger: redaction still applies', () => {
  const out = new PassThrough();
  const got: string[] = [];
  out.on('data', (c: Buffer) => got.push(c.toString()));
  const log = createLogger({ log_level: 'info', log_format: 'pretty', name: 'o' }, out);
  log.info({ client_secret: 'hunter2', provider: 'app' }, 'configured');
  const text = got.join('');
  assert.match(text, /^\d\d:\d\d:\d\d\.\d{3} INFO {2}configured {2}client_secret=\[Redacted\] provider=app\n$/);
});
