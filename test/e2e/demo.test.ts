// `npm start`'s demo, as a newcomer uses it: open the app, sign in as alice, see the identity
// headers on the demo page, sign out.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDemo, type RunningDemo } from '../../src/demo/demo.js';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { CookieJar, httpGet, loginThrough, submitThrough } from '../support/browserless.js';
import { freePort, quietLogger } from '../support/stack.js';

let demo: RunningDemo | undefined;
let outpost: Outpost | undefined;
const dir = mkdtempSync(join(tmpdir(), 'portcullis-demo-'));
after(async () => {
  await outpost?.close();
  await demo?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the demo: sign in as alice, see the headers, sign out', async () => {
  const port = await freePort();
  const base = `http://localhost:${port}`;
  demo = await startDemo({ idpPort: 0, upstreamPort: 0, portcullisUrl: base });
  assert.match(demo.banner, /DEMO MODE/);
  const config = parseConfig(demo.configYaml, { source: 'demo', baseDir: dir });
  config.outpost.listeners.https = null;
  outpost = await Outpost.create(config, { logger: quietLogger() });
  await outpost.listen();

  const jar = new CookieJar();
  const { final } = await loginThrough(`${base}/`, { username: 'alice', password: 'alice' }, { jar });
  assert.equal(final.status, 200);
  assert.match(final.body, /Portcullis demo application/);
  assert.match(final.body, /x-authentik-username[\s\S]{0,200}alice/i);
  assert.match(final.body, /X-Demo-Team[\s\S]{0,200}platform/i);
  assert.match(final.body, /outpost\.goauthentik\.io\/sign_out/);

  const pub = await httpGet(`${base}/public/hello`);
  assert.equal(pub.status, 200, 'the public page needs no login');

  const out = await submitThrough(`${base}/outpost.goauthentik.io/sign_out`, { jar });
  assert.ok(out.hops.some((h) => h.url.startsWith(demo!.issuer)), 'the IdP session is ended too');
  const after = await httpGet(`${base}/`, { jar });
  assert.equal(after.status, 302);
});
