// Every method is proxied: a WebDAV flow (PROPFIND, MKCOL, PUT, MOVE, COPY, LOCK, DELETE) through
// Portcullis to a real WebDAV server (Apache httpd with mod_dav), through the same decision as
// GET; TRACE is refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, type Stack } from '../support/stack.js';
import { CookieJar, httpGet, loginThrough, type HttpResult } from '../support/browserless.js';
import { startWebDav, type RunningWebDav } from '../support/webdav.js';

const ALICE = { username: 'alice', password: 'alice' };
/** bob is not in "admins". */
const BOB = { username: 'bob', password: 'bob' };
let bobJar: CookieJar;
let stack: Stack;
let dav: RunningWebDav;
let jar: CookieJar;

before(async () => {
  dav = await startWebDav();
  stack = await startStack({
    providers: [
      { name: 'dav', host: 'dav.localtest', internal_host: dav.url, extra: { skip_path_regex: '^/dav/public/' } },
      // The same server, with /dav/admin/ for admins only.
      { name: 'ruled', host: 'ruled.localtest', internal_host: dav.url, extra: { access_rules: [{ name: 'admins only', paths: ['^/dav/admin(/|$)'], when: '"admins" in claims.groups' }] } },
    ],
  });
  jar = new CookieJar();
  await loginThrough(stack.url('dav.localtest', '/'), ALICE, { jar });
  bobJar = new CookieJar();
  await loginThrough(stack.url('ruled.localtest', '/'), BOB, { jar: bobJar });
});

after(async () => {
  await stack?.close();
  await dav?.stop();
});

const PROPFIND_BODY = '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:resourcetype/></D:prop></D:propfind>';

function dav_(method: string, path: string, opts: { headers?: Record<string, string>; body?: string; signedIn?: boolean } = {}): Promise<HttpResult> {
  return httpGet(stack.url('dav.localtest', path), {
    jar: opts.signedIn === false ? new CookieJar() : jar,
    method,
    body: opts.body,
    headers: { 'content-type': 'application/xml; charset=utf-8', ...opts.headers },
  });
}

test('a WebDAV flow through Portcullis: PROPFIND, MKCOL, PUT, MOVE, COPY, LOCK/UNLOCK, DELETE', async () => {
  const mkcol = await dav_('MKCOL', '/dav/docs/');
  assert.equal(mkcol.status, 201, mkcol.body);
  assert.ok(existsSync(join(dav.root, 'docs')), 'the collection exists on the server');

  const put = await dav_('PUT', '/dav/docs/a.txt', { body: 'first draft', headers: { 'content-type': 'text/plain' } });
  assert.equal(put.status, 201, put.body);
  assert.equal(readFileSync(join(dav.root, 'docs', 'a.txt'), 'utf8'), 'first draft');

  const list = await dav_('PROPFIND', '/dav/docs/', { body: PROPFIND_BODY, headers: { depth: '1' } });
  assert.equal(list.status, 207, list.body);
  assert.match(list.body, /<D:href>\/dav\/docs\/a\.txt<\/D:href>/);
  assert.match(list.body, /<lp1:getcontentlength>11<\/lp1:getcontentlength>/);

  // Destination names the host the client sees; the server sees its own.
  const move = await dav_('MOVE', '/dav/docs/a.txt', { headers: { destination: stack.url('dav.localtest', '/dav/docs/b.txt') } });
  assert.equal(move.status, 201, move.body);
  assert.ok(!existsSync(join(dav.root, 'docs', 'a.txt')));
  assert.equal(readFileSync(join(dav.root, 'docs', 'b.txt'), 'utf8'), 'first draft');

  const copy = await dav_('COPY', '/dav/docs/b.txt', { headers: { destination: stack.url('dav.localtest', '/dav/docs/c.txt') } });
  assert.equal(copy.status, 201, copy.body);
  assert.equal(readFileSync(join(dav.root, 'docs', 'c.txt'), 'utf8'), 'first draft');

  const lock = await dav_('LOCK', '/dav/docs/c.txt', {
    headers: { timeout: 'Second-60' },
    body: '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>alice</D:owner></D:lockinfo>',
  });
  assert.equal(lock.status, 200, lock.body);
  const token = String(lock.headers['lock-token']);
  assert.match(token, /^<opaquelocktoken:/);
  const unlock = await dav_('UNLOCK', '/dav/docs/c.txt', { headers: { 'lock-token': token } });
  assert.equal(unlock.status, 204, unlock.body);

  const del = await dav_('DELETE', '/dav/docs/');
  assert.equal(del.status, 204, del.body);
  assert.ok(!existsSync(join(dav.root, 'docs')));
  const gone = await dav_('PROPFIND', '/dav/docs/', { body: PROPFIND_BODY, headers: { depth: '0' } });
  assert.equal(gone.status, 404);
});

test('WebDAV methods take the same decision as GET: no session, no server', async () => {
  for (const method of ['PROPFIND', 'MKCOL', 'PROPPATCH', 'REPORT', 'LOCK', 'SEARCH']) {
    const res = await dav_(method, '/dav/private/', { signedIn: false, body: PROPFIND_BODY });
    assert.equal(res.status, 302, method);
    assert.match(String(res.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/, method);
  }
  assert.ok(!existsSync(join(dav.root, 'private')));
  // On an allowlisted path they pass anonymously, like GET…
  const anonymous = await dav_('MKCOL', '/dav/public/', { signedIn: false });
  assert.equal(anonymous.status, 201, anonymous.body);
  // …but a COPY or MOVE could write outside it (its Destination is not decided): refused.
  const move = await dav_('MOVE', '/dav/public/', { signedIn: false, headers: { destination: stack.url('dav.localtest', '/dav/private/') } });
  assert.equal(move.status, 403);
  assert.ok(existsSync(join(dav.root, 'public')));
  assert.ok(!existsSync(join(dav.root, 'private')));
});

test("a COPY or MOVE is decided on its Destination too: access rules, another host, a relative one", async () => {
  const ruled = (method: string, path: string, destination: string) =>
    httpGet(stack.url('ruled.localtest', path), { jar: bobJar, method, headers: { destination } });
  assert.equal((await httpGet(stack.url('ruled.localtest', '/dav/mine/'), { jar: bobJar, method: 'MKCOL' })).status, 201);
  assert.equal((await httpGet(stack.url('ruled.localtest', '/dav/mine/n.txt'), { jar: bobJar, method: 'PUT', body: 'note', headers: { 'content-type': 'text/plain' } })).status, 201);
  // The admins' collection exists (made by alice through the provider without rules): a write there would succeed.
  assert.equal((await dav_('MKCOL', '/dav/admin/')).status, 201);
  // bob may not open /dav/admin/, so he may not write there either: as an absolute URL, an
  // absolute path, or hidden behind dot segments and case.
  for (const dest of [stack.url('ruled.localtest', '/dav/admin/n.txt'), '/dav/admin/n.txt', stack.url('ruled.localtest', '/dav/mine/../admin/n.txt'), stack.url('RULED.localtest', '/dav//admin/n.txt')]) {
    for (const method of ['COPY', 'MOVE']) {
      const res = await ruled(method, '/dav/mine/n.txt', dest);
      assert.equal(res.status, 403, `${method} to ${dest}: ${res.body}`);
      assert.match(res.body, /admins only/);
    }
  }
  assert.ok(!existsSync(join(dav.root, 'admin', 'n.txt')), 'nothing was written under /dav/admin/');
  assert.ok(existsSync(join(dav.root, 'mine', 'n.txt')), 'nothing was moved away');
  // The upstream's own name (or any other host) is no path of this application: 502, before the upstream.
  const internal = await ruled('COPY', '/dav/mine/n.txt', `${dav.url}/dav/admin/n.txt`);
  assert.equal(internal.status, 502, internal.body);
  assert.equal((await ruled('MOVE', '/dav/mine/n.txt', 'http://elsewhere.example/dav/x.txt')).status, 502);
  // A relative reference resolves differently by server: refused.
  assert.equal((await ruled('COPY', '/dav/mine/n.txt', '../admin/n.txt')).status, 400);
  assert.ok(!existsSync(join(dav.root, 'admin', 'n.txt')));
  // Allowed destinations still work, as an absolute path too.
  const copy = await ruled('COPY', '/dav/mine/n.txt', '/dav/mine/copy.txt');
  assert.equal(copy.status, 201, copy.body);
  assert.equal(readFileSync(join(dav.root, 'mine', 'copy.txt'), 'utf8'), 'note');
});

test('TRACE is refused, before the upstream', async () => {
  const res = await dav_('TRACE', '/dav/');
  assert.equal(res.status, 405);
  assert.doesNotMatch(String(res.headers.allow), /TRACE/);
  assert.match(String(res.headers.allow), /PROPFIND/);
});
