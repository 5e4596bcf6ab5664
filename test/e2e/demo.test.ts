// `npm start`'s demo, as a newcomer uses it: open the app, see a login page that names the
// application and the demo accounts, sign in as alice, see the identity headers on the demo page
// (the JWT folded), visit the public page, sign out and land on "You are signed out"; restart
// the demo and still be signed in.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { DEMO_APP_NAME, startDemo, type RunningDemo } from '../../src/demo/demo.js';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { createLogger } from '../../src/server/log-format.js';
import { CookieJar, followRedirects, httpGet, loginThrough, submitThrough } from '../support/browserless.js';
import { freePort } from '../support/stack.js';

const running: { demo: RunningDemo; outpost: Outpost }[] = [];
const dir = mkdtempSync(join(tmpdir(), 'portcullis-demo-'));
const stateDir = join(dir, 'state');
after(async () => {
  for (const r of running.splice(0)) {
    await r.outpost.close();
    await r.demo.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

const warnings: string[] = [];
const sink = new PassThrough();
sink.on('data', (c: Buffer) => warnings.push(...c.toString().split('\n').filter(Boolean)));

/** The demo as `portcullis --demo` runs it, on free ports, with its state in `stateDir`. */
async function start(base: string): Promise<{ demo: RunningDemo; outpost: Outpost }> {
  const demo = await startDemo({ idpPort: 0, upstreamPort: 0, portcullisUrl: base, stateDir });
  const config = parseConfig(demo.configYaml, { source: 'demo', baseDir: dir });
  config.outpost.listeners.https = null;
  const outpost = await Outpost.create(config, { logger: createLogger({ log_level: 'warn', log_format: 'json', name: 'demo' }, sink) });
  await outpost.listen();
  const r = { demo, outpost };
  running.push(r);
  return r;
}

async function stop(r: { demo: RunningDemo; outpost: Outpost }): Promise<void> {
  running.splice(running.indexOf(r), 1);
  await r.outpost.close();
  await r.demo.close();
}

test('the demo: the login page names the application and the accounts; sign in as alice; sign out lands on "You are signed out"', async () => {
  const port = await freePort();
  const base = `http://localhost:${port}`;
  const first = await start(base);
  assert.match(first.demo.banner, /DEMO MODE/);

  // The login page: the application's name (not its client id) and the demo accounts.
  const login = await followRedirects(`${base}/`, { jar: new CookieJar() });
  assert.equal(login.final.status, 200);
  assert.ok(login.final.body.includes(`to continue to <strong>${DEMO_APP_NAME}</strong>`), login.final.body);
  assert.doesNotMatch(login.final.body, /portcullis-demo<\/strong>/);
  assert.match(login.final.body, /id="demo-accounts"[\s\S]*<code>alice<\/code> \/ <code>alice<\/code>[\s\S]*<code>bob<\/code> \/ <code>bob<\/code>/);

  const jar = new CookieJar();
  const { final } = await loginThrough(`${base}/`, { username: 'alice', password: 'alice' }, { jar });
  assert.equal(final.status, 200);
  assert.match(final.body, /Portcullis demo application/);
  assert.match(final.body, /Portcullis signed you in/);
  assert.match(final.body, /x-authentik-username[\s\S]{0,200}alice/i);
  assert.match(final.body, /X-Demo-Team[\s\S]{0,200}platform/i);
  assert.match(final.body, /id="sign-out" href="\/outpost\.goauthentik\.io\/sign_out"/);
  // The JWT is folded: its start shown, the whole value one click away.
  const jwtRow = /<th>X-authentik-jwt<\/th><td>([\s\S]*?)<\/td>/i.exec(final.body)?.[1] ?? '';
  assert.match(jwtRow, /^<details class="long"><summary>eyJ[\w-]{45}… <span class="size">\(\d+ characters\)<\/span><\/summary>eyJ[\w-]+\.[\w-]+\.[\w-]+<\/details>$/);

  // The public page, anonymous: no login claimed, no Sign-out link, a Sign-in link.
  const pub = await httpGet(`${base}/public/hello`);
  assert.equal(pub.status, 200, 'the public page needs no login');
  assert.doesNotMatch(pub.body, /signed you in|id="sign-out"|Sign out/);
  assert.match(pub.body, /id="sign-in" href="\/"/);
  assert.match(pub.body, /Nobody is signed in/);

  const out = await submitThrough(`${base}/outpost.goauthentik.io/sign_out`, { jar });
  assert.ok(out.hops.some((h) => h.url.startsWith(first.demo.issuer)), 'the IdP session is ended too');
  assert.equal(out.final.status, 200);
  assert.match(out.final.body, /<h1>You are signed out<\/h1>/);
  assert.match(out.final.body, /<a href="[^"]*">Sign in again<\/a>/);
  const after = await httpGet(`${base}/`, { jar });
  assert.equal(after.status, 302);
  await stop(first);
});

test('the demo keeps its secrets in its state folder: a restart keeps who is signed in, nothing dropped', async () => {
  const port = await freePort();
  const base = `http://localhost:${port}`;
  const first = await start(base);
  const jar = new CookieJar();
  assert.equal((await loginThrough(`${base}/`, { username: 'bob', password: 'bob' }, { jar })).final.status, 200);
  const secrets = join(stateDir, 'demo-secrets.json');
  assert.equal(statSync(secrets).mode & 0o777, 0o600);
  const kept = readFileSync(secrets, 'utf8');
  await stop(first);

  warnings.length = 0;
  const second = await start(base);
  assert.equal(readFileSync(secrets, 'utf8'), kept, 'the secrets were replaced');
  const page = await httpGet(`${base}/`, { jar });
  assert.equal(page.status, 200, 'not signed in after the restart');
  assert.match(page.body, /x-authentik-username[\s\S]{0,200}bob/i);
  assert.deepEqual(warnings.filter((l) => /dropped|could not be read/.test(l)), []);
  await stop(second);
});
