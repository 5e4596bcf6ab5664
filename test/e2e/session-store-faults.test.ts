// The embedded store when it cannot record (its SQLite file locked by another process for longer
// than the write timeout, as a stuck writer or a read-only mount would make it): sign-out and
// login answer 503 pages that say what did not happen, nothing is half done, and what was
// answered holds across a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';

const APP = 'app.localtest';
const ALICE = { username: 'alice', password: 'alice' };

let stack: Stack;

before(async () => {
  stack = await startStack({ providers: [{ name: 'app', host: APP }] });
});
after(() => stack?.close());

function ask(path: string, cookie?: string): Promise<HttpResult> {
  return httpGet(stack.url(APP, path), { headers: cookie ? { cookie } : {} });
}

async function login(): Promise<{ final: HttpResult; cookie: string | undefined }> {
  const jar = new CookieJar();
  const { final } = await loginThrough(stack.url(APP, '/'), ALICE, { jar });
  return { final, cookie: jar.header(new URL(stack.url(APP, '/'))) };
}

function username(res: HttpResult): string | undefined {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 200)}`);
  return (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-authentik-username'];
}

const isLoginRedirect = (res: HttpResult) => res.status === 302 && String(res.headers.location).includes('/outpost.goauthentik.io/start?rd=');

test('a store that cannot record: sign-out and login answer 503 and change nothing; answered ones survive a restart', async () => {
  const { cookie } = await login();
  assert.ok(cookie);
  assert.equal(username(await ask('/before', cookie)), 'alice');

  const lock = new Database(stack.journal);
  lock.exec('BEGIN IMMEDIATE');
  try {
    const out = await ask('/outpost.goauthentik.io/sign_out', cookie);
    assert.equal(out.status, 503, out.body.slice(0, 300));
    assert.match(out.body, /sessions\.unavailable/);
    assert.match(out.body, /could not be ended: you are still signed in/);
    assert.equal(out.headers['set-cookie'], undefined, 'the cookie stays, so that the user can sign out again');
    assert.equal(username(await ask('/during', cookie)), 'alice', 'reported not ended: it is not ended');

    const failed = await login();
    assert.equal(failed.final.status, 503, failed.final.body.slice(0, 300));
    assert.match(failed.final.body, /You signed in, but Portcullis cannot reach its session store right now to keep the session/);
    assert.match(failed.final.body, /sessions\.unavailable/);
    assert.ok(!failed.cookie, `no session cookie for a session that was not stored (jar: ${failed.cookie})`);
  } finally {
    lock.exec('ROLLBACK');
    lock.close();
  }

  const out = await ask('/outpost.goauthentik.io/sign_out', cookie);
  assert.equal(out.status, 302);
  assert.ok(isLoginRedirect(await ask('/after', cookie)));
  const again = await login();
  assert.ok(again.cookie);
  assert.equal(username(again.final), 'alice');

  // Killed right after answering (close without a graceful drain is what a restart sees too).
  await stack.stopOutpost();
  await stack.restartOutpost();
  assert.ok(isLoginRedirect(await ask('/after-restart', cookie)), 'the signed-out session did not come back');
  assert.equal(username(await ask('/after-restart', again.cookie)), 'alice', 'the answered login is there');
});
