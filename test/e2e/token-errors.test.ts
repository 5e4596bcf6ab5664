// Precise token-endpoint errors, against the real IdP: a wrong client secret (client_secret_basic:
// the IdP answers 401 with WWW-Authenticate) is named invalid_client — on the page for an
// administrator, generically for a user, always in the log — and never "unreachable"; a code used
// twice is invalid_grant (400).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, isRedirect, loginThrough, type HttpResult } from '../support/browserless.js';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { cookieNameFor } from '../../src/config/provider.js';

const ALICE = { username: 'alice', password: 'alice' };
const BOB = { username: 'bob', password: 'bob' };
const APP = 'app.localtest';

let stack: Stack;
const logLines: Record<string, unknown>[] = [];
const logger = () =>
  pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  );

before(async () => {
  stack = await startStack({
    providers: [{ name: 'app', host: APP }],
    users: [
      { username: 'alice', password: 'alice', groups: ['admins'], ak_proxy: { is_superuser: true } },
      { username: 'bob', password: 'bob', groups: [] },
    ],
    outpostOptions: { logger: logger() },
  });
});
after(async () => stack?.close());

/** Follows a login until Portcullis's own answer to the callback. */
async function loginUntilCallback(jar: CookieJar, user: { username: string; password: string }): Promise<HttpResult> {
  const { final, hops } = await loginThrough(stack.url(APP, '/outpost.goauthentik.io/start?rd=' + encodeURIComponent(stack.url(APP, '/'))), user, { jar });
  const callback = hops.find((h) => h.url.includes('/outpost.goauthentik.io/callback'));
  assert.ok(callback, 'the callback was reached');
  return callback === final ? final : callback;
}

describe('invalid_grant', () => {
  test('a callback replayed with its flow cookie (the code is used up) is invalid_grant: 400, not unreachable', async () => {
    const jar = new CookieJar();
    const flowCookie = cookieNameFor('client-app') + '_flow';
    const start = await httpGet(stack.url(APP, '/outpost.goauthentik.io/start'), { jar });
    assert.equal(start.status, 302);
    const saved = jar.get(flowCookie, APP);
    assert.ok(saved);
    const { final, hops } = await loginThrough(String(start.headers.location), ALICE, { jar });
    assert.equal(final.status, 200);
    const callback = hops.find((h) => h.url.includes('/outpost.goauthentik.io/callback'))!;
    assert.ok(isRedirect(callback));
    const replayJar = new CookieJar();
    replayJar.set(flowCookie, saved, { host: APP });
    const logFrom = logLines.length;
    const replay = await httpGet(callback.url, { jar: replayJar, headers: { accept: 'application/json' } });
    assert.equal(replay.status, 400, replay.body);
    assert.equal(JSON.parse(replay.body).error, 'oidc.token_invalid_grant');
    const line = logLines.slice(logFrom).find((l) => l.msg === 'login failed at the token endpoint');
    assert.ok(line, 'a log line');
    assert.equal(line.providerError, 'invalid_grant');
    assert.equal(line.providerStatus, 400);
    assert.ok(typeof line.providerDescription === 'string' && line.providerDescription.length > 0, 'with the provider\'s description');
  });
});

describe('a wrong client secret (client_secret_basic)', () => {
  let wrong: Outpost;
  const adminJar = new CookieJar();

  before(async () => {
    // Alice (is_superuser) signs in while the secret is right; then Portcullis restarts with a
    // wrong one on the same port, the same journal and cookie secret: her session stays valid.
    seen((await loginThrough(stack.url(APP, '/'), ALICE, { jar: adminJar })).final);
    await stack.stopOutpost();
    const config = parse(stack.configYaml) as { providers: { client_secret: string }[] };
    config.providers[0]!.client_secret = 'not-the-registered-secret';
    wrong = await Outpost.create(parseConfig(stringify(config), { source: 'wrong secret', baseDir: '/tmp' }), { logger: logger() });
    await wrong.listen();
  });
  after(async () => {
    await wrong?.close();
    await stack.restartOutpost();
  });

  test('a user gets a generic page (502) naming no provider detail; the log has the error and description', async () => {
    const logFrom = logLines.length;
    const res = await loginUntilCallback(new CookieJar(), BOB);
    assert.equal(res.status, 502);
    assert.match(res.body, /Login could not be completed/);
    assert.match(res.body, /oidc\.token_invalid_client/, 'the machine-readable code and request id');
    assert.doesNotMatch(res.body, /could not be reached/i, 'the IdP was reached: it refused');
    assert.doesNotMatch(res.body, /client_secret/, 'no configuration advice for users');
    const line = logLines.slice(logFrom).find((l) => l.msg === 'login failed at the token endpoint');
    assert.ok(line, 'a log line');
    assert.equal(line.providerError, 'invalid_client');
    assert.equal(line.providerStatus, 401, 'the IdP answered 401 (with WWW-Authenticate)');
    assert.equal(typeof line.providerDescription, 'string');
    assert.doesNotMatch(JSON.stringify(line), /not-the-registered-secret/, 'no secret in the log');
  });

  test('an administrator (ak_proxy is_superuser) gets a page naming the problem and what to check', async () => {
    const res = await loginUntilCallback(adminJar, ALICE);
    assert.equal(res.status, 502);
    assert.match(res.body, /invalid_client/);
    assert.match(res.body, /HTTP 401/);
    assert.match(res.body, /client_secret/);
    assert.match(res.body, /token_endpoint_auth_method/);
    assert.doesNotMatch(res.body, /not-the-registered-secret/);
  });
});

function seen(res: HttpResult): unknown {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 300)}`);
  return JSON.parse(res.body);
}
