import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { CookieJar, followRedirects, httpGet, parseForms, resolveHost } from '../support/browserless.js';
import { selfSignedCert, startClosedPort, startUpstream, type RunningUpstream } from '../support/upstream.js';

describe('CookieJar', () => {
  it('keeps host-only cookies per host and honours Path', () => {
    const jar = new CookieJar();
    jar.store(new URL('http://a.localtest:9000/x/y'), ['sid=1; Path=/; HttpOnly', 'deep=2', 'p=3; Path=/app']);
    assert.equal(jar.header(new URL('http://a.localtest:9000/')), 'sid=1');
    assert.equal(jar.header(new URL('http://a.localtest:9000/x/z')), 'deep=2; sid=1');
    assert.equal(jar.header(new URL('http://a.localtest:9000/app/1')), 'p=3; sid=1');
    assert.equal(jar.header(new URL('http://a.localtest:9000/application')), 'sid=1');
    assert.equal(jar.header(new URL('http://b.localtest:9000/')), '');
    assert.equal(jar.header(new URL('http://sub.a.localtest/')), '');
    assert.equal(jar.get('sid'), '1');
    assert.equal(jar.get('sid', 'b.localtest'), undefined);
  });

  it('honours Domain (parent domain), and rejects foreign domains', () => {
    const jar = new CookieJar();
    jar.store(new URL('http://auth.localtest/'), ['shared=s; Domain=.localtest; Path=/', 'evil=e; Domain=other.test']);
    assert.equal(jar.header(new URL('http://a.localtest/')), 'shared=s');
    assert.equal(jar.header(new URL('http://localtest/')), 'shared=s');
    assert.equal(jar.header(new URL('http://other.test/')), '');
    assert.equal(jar.get('shared', 'b.localtest'), 's');
  });

  it('handles Max-Age, Expires and deletion', () => {
    const jar = new CookieJar();
    const u = new URL('http://app.localtest/');
    jar.store(u, ['a=1; Max-Age=60', 'b=2; Expires=Wed, 21 Oct 2099 07:28:00 GMT', 'c=3; Expires=Thu, 01 Jan 1970 00:00:00 GMT']);
    assert.equal(jar.header(u), 'a=1; b=2');
    jar.store(u, ['a=; Max-Age=0', 'b=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT']);
    assert.equal(jar.header(u), '');
    jar.set('t', 'v', { host: 'app.localtest' });
    assert.equal(jar.header(u), 't=v');
    jar.set('t', 'w', { host: 'app.localtest', maxAgeSeconds: -1 });
    assert.equal(jar.header(u), '');
  });

  it('sends Secure cookies only over https (or to localhost)', () => {
    const jar = new CookieJar();
    jar.store(new URL('https://app.localtest/'), ['s=1; Secure']);
    assert.equal(jar.header(new URL('http://app.localtest/')), '');
    assert.equal(jar.header(new URL('https://app.localtest/')), 's=1');
    jar.store(new URL('http://localhost:9000/'), ['l=1; Secure']);
    assert.equal(jar.header(new URL('http://localhost:9000/')), 'l=1');
  });
});

describe('browserless helpers', () => {
  it('resolves host names', () => {
    assert.equal(resolveHost('app.localtest'), '127.0.0.1');
    assert.equal(resolveHost('x.example', { 'x.example': '127.0.0.1' }), '127.0.0.1');
    assert.equal(resolveHost('a.b.example', { '*.b.example': '127.0.0.1' }), '127.0.0.1');
  });

  it('parses forms', () => {
    const forms = parseForms(
      `<form id="f" method="post" action="/login?a=1&amp;b=2"><input type="hidden" name="xsrf" value="x&quot;y"><input name="username"><input type="password" name="pw"><input type="checkbox" name="c"><button type="submit">Go</button></form>`,
      'http://idp.localtest:1/interaction/abc',
    );
    assert.equal(forms.length, 1);
    assert.equal(forms[0]!.action, 'http://idp.localtest:1/login?a=1&b=2');
    assert.equal(forms[0]!.method, 'POST');
    assert.deepEqual(forms[0]!.fields, { xsrf: 'x"y', username: '', pw: '' });
    assert.deepEqual(forms[0]!.inputTypes.password, ['pw']);
  });
});

describe('upstream', () => {
  let up: RunningUpstream;
  before(async () => {
    up = await startUpstream({ name: 'echo' });
  });
  after(async () => {
    await up.close();
  });

  it('echoes requests as JSON and records them, with the Host sent via resolve', async () => {
    const jar = new CookieJar();
    const res = await httpGet(`http://app.localtest:${up.port}/hello?x=1`, { jar, headers: { 'X-Test': 'yes' } });
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body) as { name: string; method: string; url: string; headers: Record<string, string> };
    assert.equal(body.name, 'echo');
    assert.equal(body.url, '/hello?x=1');
    assert.equal(body.headers.host, `app.localtest:${up.port}`);
    assert.equal(body.headers['x-test'], 'yes');
    const seen = up.requests.at(-1)!;
    assert.equal(seen.url, '/hello?x=1');
    assert.ok(seen.rawHeaders.includes('X-Test'), 'header spelling kept on the wire');
  });

  it('answers /status/NNN and /slow', async () => {
    assert.equal((await httpGet(`${up.url}/status/418`)).status, 418);
    assert.equal((await httpGet(`${up.url}/status/204`)).status, 204);
    const t0 = Date.now();
    const slow = await httpGet(`${up.url}/slow?ms=120`);
    assert.equal(slow.status, 200);
    assert.ok(Date.now() - t0 >= 100);
  });

  it('follows redirects across hosts, storing cookies on the way', async () => {
    // /status/302 has no Location → not followed; exercise followRedirects on a plain 200.
    const jar = new CookieJar();
    const { final, hops } = await followRedirects(`${up.url}/x`, { jar });
    assert.equal(final.status, 200);
    assert.equal(hops.length, 1);
  });

  it('speaks WebSocket: hello, then echo', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${up.port}/socket?room=1`, { headers: { 'X-Who': 'me' } });
    const messages: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.on('message', (data) => {
        messages.push(String(data));
        if (messages.length === 1) ws.send('ping');
        else resolve();
      });
      ws.on('error', reject);
    });
    ws.close();
    const hello = JSON.parse(messages[0]!) as { type: string; url: string; headers: Record<string, string> };
    assert.equal(hello.type, 'hello');
    assert.equal(hello.url, '/socket?room=1');
    assert.equal(hello.headers['x-who'], 'me');
    assert.equal(messages[1], 'ping');
    assert.equal(up.requests.at(-1)!.url, '/socket?room=1');
  });

  it('close() ends open WebSocket connections and slow requests', async () => {
    const other = await startUpstream();
    const ws = new WebSocket(`ws://127.0.0.1:${other.port}/`);
    await new Promise((r) => ws.once('message', r));
    const pending = httpGet(`${other.url}/slow?ms=60000`).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    await other.close();
    assert.ok((await pending) instanceof Error);
  });

  it('gives a closed port', async () => {
    const port = await startClosedPort();
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      /ECONNREFUSED/,
    );
  });

  it('serves TLS with a self-signed certificate', async () => {
    const tls = await selfSignedCert(['app.localtest', '127.0.0.1']);
    assert.match(tls.cert, /BEGIN CERTIFICATE/);
    assert.match(tls.key, /PRIVATE KEY/);
    const secure = await startUpstream({ tls, name: 'tls' });
    try {
      assert.ok(secure.url.startsWith('https://127.0.0.1:'));
      const res = await httpGet(`https://app.localtest:${secure.port}/t`);
      assert.equal(res.status, 200);
      assert.equal((JSON.parse(res.body) as { name: string }).name, 'tls');
    } finally {
      await secure.close();
    }
  });
});
