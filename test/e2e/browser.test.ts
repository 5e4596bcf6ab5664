// The whole login and sign-out in a real browser: Debian's Chromium driven by playwright-core
// (never a downloaded browser). `*.localtest` is mapped to 127.0.0.1 by Chromium itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type Response } from 'playwright-core';
import { startStack, type Stack } from '../support/stack.js';
import { launchChromium } from '../support/chromium.js';
import { httpGet } from '../support/browserless.js';

const HOST = 'app.localtest';

let stack: Stack;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
/** Screenshots go to a fresh temp dir (kept after the run, never inside the repository). */
let shots: string;

before(async () => {
  shots = mkdtempSync(join(tmpdir(), 'portcullis-browser-'));
  stack = await startStack({ providers: [{ name: 'app', host: HOST }] });
  browser = await launchChromium();
  context = await browser.newContext();
});

after(async () => {
  await context?.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await stack?.close();
});

test('Chromium logs in through the IdP, lands on the exact URL, and signs out of both', async (t) => {
  const page = await context!.newPage();
  page.setDefaultTimeout(20_000);
  const appOrigin = `http://${HOST}:${stack.port}`;
  const idpOrigin = new URL(stack.idp.issuer).origin;

  // Every response the page sees, to check what happened between two pages.
  const responses: Response[] = [];
  page.on('response', (r) => responses.push(r));

  // 1. First visit: sent to the IdP's login form.
  await page.goto(`${appOrigin}/reports?month=11`);
  await page.waitForSelector('#username');
  assert.equal(new URL(page.url()).origin, idpOrigin, `expected the IdP login page, got ${page.url()}`);
  const firstHop = responses.find((r) => r.url() === `${appOrigin}/reports?month=11`);
  assert.ok(firstHop, 'the original request was made');
  assert.equal(firstHop.status(), 302);
  assert.match(firstHop.headers().location ?? '', /\/outpost\.goauthentik\.io\/start\?rd=/);

  // 2. Sign in.
  await page.fill('#username', 'alice');
  await page.fill('#password', 'alice');
  const target = `${appOrigin}/reports?month=11`;
  const [landedResponse] = await Promise.all([
    page.waitForResponse((r) => r.url() === target && r.request().isNavigationRequest() && r.status() === 200),
    page.click('#login'),
  ]);
  await page.waitForURL((url) => url.href === target);

  // 3. Landed on exactly the original URL; the upstream saw the identity.
  const landed = new URL(page.url());
  assert.equal(landed.host, `${HOST}:${stack.port}`);
  assert.equal(landed.pathname + landed.search, '/reports?month=11');
  const seen = (await landedResponse.json()) as { url: string; headers: Record<string, string> };
  // What the user sees is that same answer (Chromium shows JSON as text).
  assert.match((await page.textContent('body')) ?? '', /"x-authentik-username":"alice"/);
  assert.equal(seen.url, '/reports?month=11');
  assert.equal(seen.headers['x-authentik-username'], 'alice');
  assert.equal(seen.headers['x-authentik-groups'], 'admins|staff');
  assert.equal(seen.headers['x-authentik-email'], 'alice@example.com');

  const shot = join(shots, 'landed.png');
  await page.screenshot({ path: shot, fullPage: true });
  const png = readFileSync(shot);
  assert.ok(png.length > 100, 'screenshot written');
  assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'screenshot is a PNG');
  t.diagnostic(`screenshot of the landed page: ${shot}`);

  // 4. The session cookie: HttpOnly, SameSite=Lax, host-only on the app host.
  const cookies = await context!.cookies(appOrigin);
  const session = cookies.filter((c) => /^authentik_proxy_[0-9a-f]{8}$/.test(c.name));
  assert.equal(session.length, 1, `one session cookie expected, got ${cookies.map((c) => c.name).join(', ')}`);
  const sessionCookie = session[0]!;
  assert.equal(sessionCookie.httpOnly, true);
  assert.equal(sessionCookie.sameSite, 'Lax');
  assert.equal(sessionCookie.domain, HOST);
  assert.equal(sessionCookie.path, '/');
  const oldCookie = `${sessionCookie.name}=${sessionCookie.value}`;
  // Scripts cannot read it.
  assert.equal(await page.evaluate(() => document.cookie.includes('authentik_proxy_')), false);

  // Before sign-out, the captured cookie alone is a valid session (so the check after it means something).
  const valid = await httpGet(`${appOrigin}/reports?month=11`, { headers: { cookie: oldCookie } });
  assert.equal(valid.status, 200);
  assert.equal((JSON.parse(valid.body) as { headers: Record<string, string> }).headers['x-authentik-username'], 'alice');

  // 5. Sign out: the outpost ends its session, the IdP's logout page submits itself, the IdP
  //    sends us back to Portcullis's signed-out page; "Sign in again" leads to the app, which
  //    (no session anywhere) sends us to the IdP login form.
  responses.length = 0;
  await page.goto(`${appOrigin}/outpost.goauthentik.io/sign_out`);
  await page.waitForURL((url) => url.pathname === '/outpost.goauthentik.io/signed_out');
  assert.equal(await page.textContent('h1'), 'You are signed out');
  assert.equal(await page.getAttribute('a', 'href'), `${appOrigin}/`);
  await page.click('text=Sign in again');
  await page.waitForSelector('#username');
  assert.equal(new URL(page.url()).origin, idpOrigin, `expected the IdP login page, got ${page.url()}`);
  const urls = responses.map((r) => `${r.status()} ${r.url()}`);
  const signOut = responses.find((r) => r.url() === `${appOrigin}/outpost.goauthentik.io/sign_out`);
  assert.ok(signOut, `sign_out requested: ${urls.join(' | ')}`);
  assert.equal(signOut.status(), 302);
  assert.ok(new URL(signOut.headers().location ?? '', appOrigin).href.startsWith(idpOrigin), 'sign_out goes to the IdP end-session endpoint');
  assert.ok(
    responses.some((r) => r.url().startsWith(idpOrigin) && r.request().method() === 'POST'),
    `the IdP logout form was submitted: ${urls.join(' | ')}`,
  );
  const backAtApp = responses.find((r) => r.url() === `${appOrigin}/`);
  assert.ok(backAtApp, `the IdP sent the browser back to the app: ${urls.join(' | ')}`);
  assert.equal(backAtApp.status(), 302, 'the app no longer has a session');
  assert.match(backAtApp.headers().location ?? '', /\/outpost\.goauthentik\.io\/start\?rd=/);
  assert.ok(
    responses.some((r) => r.url().startsWith(`${idpOrigin}/interaction/`) && r.status() === 200),
    `the IdP asks for credentials again (its session ended too): ${urls.join(' | ')}`,
  );
  const remaining = await context!.cookies(appOrigin);
  assert.equal(remaining.some((c) => c.name === sessionCookie.name), false, 'the session cookie was cleared');

  // 6. The old cookie value, replayed without a browser, is no longer a session on the server.
  const replay = await httpGet(`${appOrigin}/reports?month=11`, { headers: { cookie: oldCookie } });
  assert.equal(replay.status, 302);
  assert.match(String(replay.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/);
  await page.close();
});
