// Interoperability with a second, independent OpenID Provider: LemonLDAP::NG 2.16 from Debian
// (see test/support/lemonldap.ts), its Demo users, served through nginx. Portcullis is
// registered as a relying party in LemonLDAP's own configuration, and everything asserted is
// what the upstream (or nginx's forward-auth site) finally receives.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { startLemonldap, type RunningLemonldap } from '../support/lemonldap.js';
import { startUpstream, type RunningUpstream } from '../support/upstream.js';
import { freePort, quietLogger } from '../support/stack.js';
import { CookieJar, loginThrough, type HttpResult } from '../support/browserless.js';

const DWHO = { username: 'dwho', password: 'dwho' };
const APP = 'app.localtest';

let llng: RunningLemonldap;
let upstream: RunningUpstream;
let outpost: Outpost;
let port: number;
let dir: string;
const url = (host: string, path = '/') => `http://${host}:${port}${path}`;

function seen(res: HttpResult): { url: string; headers: Record<string, string> } {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status} for ${res.url}: ${res.body.slice(0, 400)}\n${llng.logs().slice(-2000)}`);
  const body = JSON.parse(res.body) as { name: string; url: string; headers: Record<string, string> };
  assert.equal(body.name, 'upstream');
  return body;
}

before(async () => {
  port = await freePort();
  dir = mkdtempSync(join(tmpdir(), 'portcullis-llng-test-'));
  upstream = await startUpstream();
  const secret = randomBytes(16).toString('hex');
  llng = await startLemonldap({
    relyingParties: [
      {
        key: 'app',
        clientId: 'portcullisapp',
        clientSecret: secret,
        redirectUris: [`${url(APP)}outpost.goauthentik.io/callback?X-authentik-auth-callback=true`],
        postLogoutRedirectUris: [url(APP)],
      },
    ],
  });
  const config = {
    outpost: { name: 'llng outpost', listeners: { http: `127.0.0.1:${port}`, https: null }, session_store: { type: 'embedded', path: join(dir, 'sessions.jsonl') }, log_level: 'silent' },
    providers: [
      {
        name: 'app',
        issuer: llng.issuer,
        client_id: 'portcullisapp',
        client_secret: secret,
        cookie_secret: randomBytes(24).toString('base64url'),
        external_host: url(APP),
        internal_host: upstream.url,
      },
    ],
  };
  outpost = await Outpost.create(parseConfig(stringify(config), { source: 'llng test config', baseDir: dir }), { logger: quietLogger() });
  await outpost.listen();
});

after(async () => {
  await outpost?.close().catch(() => undefined);
  await llng?.close();
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('LemonLDAP::NG, proxy mode', () => {
  const jar = new CookieJar();

  test('login through the LemonLDAP portal lands on the upstream with the user id', async () => {
    const { final, hops } = await loginThrough(url(APP, '/reports?month=11'), DWHO, { jar });
    const authorize = new URL(String(hops[1]!.headers.location));
    assert.equal(authorize.origin, llng.issuer, 'sent to the LemonLDAP portal');
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    const s = seen(final);
    assert.equal(s.url, '/reports?month=11');
    assert.equal(s.headers['x-authentik-uid'], 'dwho');
  });
});
