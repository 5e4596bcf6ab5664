// Front-channel logout in a real browser (Debian's Chromium): the IdP's logout page frames
// Portcullis's front-channel URL; Chromium renders it (its CSP frame-ancestors names the IdP) and
// the session ends. A page of any other origin that frames the same URL is refused by Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, type BrowserContext } from 'playwright-core';
import { startStack, type Stack } from '../support/stack.js';
import { launchChromium } from '../support/chromium.js';
import { httpGet } from '../support/browserless.js';

const HOST = 'front.localtest';

let stack: Stack;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
let attacker: http.Server | undefined;

before(async () => {
  stack = await startStack({ providers: [{ name: 'front', host: HOST, client: { frontchannel_logout: true } }] });
  browser = await launchChromium();
  context = await browser.newContext();
});

after(async () => {
  await context?.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await new Promise((r) => (attacker ? attacker.close(r) : r(undefined)));
  await stack?.close();
});

test("Chromium: the IdP's logout page frames the front-channel URL and the session ends; another origin may not frame it", async () => {
  const page = await context!.newPage();
  page.setDefaultTimeout(20_000);
  const appOrigin = `http://${HOST}:${stack.port}`;
  const messages: string[] = [];
  page.on('console', (m) => messages.push(m.text()));

  await page.goto(`${appOrigin}/private`);
  await page.fill('#username', 'alice');
  await page.fill('#password', 'alice');
  await Promise.all([page.waitForURL(`${appOrigin}/private`), page.click('#login')]);
  const session = (await context!.cookies(appOrigin)).find((c) => c.name === stack.outpost.providers.byName('front')!.cookieName);
  assert.ok(session, 'signed in');
  const cookie = `${session.name}=${session.value}`;
  assert.equal((await httpGet(`${appOrigin}/private`, { headers: { cookie } })).status, 200);

  // Sign out at the IdP: its page frames our URL, waits for it to load, then submits itself.
  const framed = page.waitForResponse((r) => r.url().startsWith(`${appOrigin}/outpost.goauthentik.io/frontchannel_logout?`));
  await page.goto(`${stack.idp.issuer}/session/end`);
  const frameResponse = await framed;
  assert.equal(frameResponse.status(), 200);
  assert.equal(frameResponse.headers()['content-security-policy'], `frame-ancestors ${new URL(stack.idp.issuer).origin}`);
  await page.waitForSelector('#signed-out');
  assert.equal(messages.filter((m) => /Refused to frame/i.test(m)).length, 0, `Chromium rendered the frame: ${messages.join(' | ')}`);
  assert.equal((await httpGet(`${appOrigin}/private`, { headers: { cookie } })).status, 302, 'the session ended');

  // Any other origin framing the URL: Chromium refuses to render it.
  const src = frameResponse.url();
  attacker = http.createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<!doctype html><iframe id="f" src="${src.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}"></iframe>`);
  });
  await new Promise<void>((r) => attacker!.listen(0, '127.0.0.1', () => r()));
  messages.length = 0;
  await page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
  await page.waitForTimeout(500);
  const frame = page.frames().find((f) => f !== page.mainFrame());
  const rendered = frame ? await frame.evaluate(() => document.body?.innerText ?? '').catch(() => '') : '';
  assert.doesNotMatch(rendered, /Signed out/, 'the frame is not rendered for another origin');
  assert.ok(messages.some((m) => /Refused to frame|frame-ancestors/i.test(m)), `Chromium reports the refusal: ${messages.join(' | ')}`);
});
