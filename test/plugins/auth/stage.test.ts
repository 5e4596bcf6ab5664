// The auth stage (session lookup from the cookie), run directly on contexts from the outpost's
// context factory. Sessions live in the harness's memory-only EmbeddedSessionStore.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTINUE, type RequestContext, type Stage } from '../../../src/pipeline/contract.js';
import type { EmbeddedSessionStore } from '../../../src/sessions/embedded-store.js';
import type { SessionRecord, SessionStore } from '../../../src/sessions/store.js';
import { createHarness, type Harness } from '../support.js';

let h: Harness;
let auth: Stage;

before(async () => {
  h = await createHarness({ discover: false });
  auth = h.stage('auth');
});
after(() => h.close());

async function run(ctx: RequestContext, stage: Stage = auth): Promise<void> {
  assert.equal(await stage.run(ctx), CONTINUE);
}

async function stored(provider: string, overrides: Parameters<Harness['session']>[1] = {}): Promise<SessionRecord> {
  const s = h.session(provider, overrides);
  await h.store.put(s);
  return s;
}

/** The clearing Set-Cookie of a provider's session cookie. */
function assertCleared(ctx: RequestContext, provider = 'app'): void {
  const p = h.provider(provider);
  assert.ok(ctx.setCookies !== null, 'a Set-Cookie is added');
  assert.equal(ctx.setCookies.length, 1);
  const c = ctx.setCookies[0]!;
  assert.ok(c.startsWith(`${p.cookieName}=;`), c);
  assert.match(c, /; Max-Age=0(;|$)/);
  assert.match(c, /; Path=\//);
  assert.match(c, /; HttpOnly/);
  assert.match(c, /; Secure/, 'https provider: the clearing cookie has the same attributes as the session cookie');
}

describe('no cookie', () => {
  test('→ CONTINUE, session null, nothing set', async () => {
    const ctx = h.proxy('app', '/x', { cookie: 'theme=dark; _ga=1' });
    await run(ctx);
    assert.equal(ctx.session, null);
    assert.equal(ctx.setCookies, null);
    const bare = h.proxy('app', '/x');
    await run(bare);
    assert.equal(bare.session, null);
    assert.equal(bare.setCookies, null);
  });

  test('an empty cookie value counts as none', async () => {
    const ctx = h.proxy('app', '/x', { cookie: `${h.provider('app').cookieName}=` });
    await run(ctx);
    assert.equal(ctx.session, null);
    assert.equal(ctx.setCookies, null);
  });
});

describe('a valid cookie', () => {
  test('→ ctx.session is the stored record; no Set-Cookie', async () => {
    const s = await stored('app');
    const ctx = h.proxy('app', '/x', { cookie: `theme=dark; ${h.sessionCookie('app', s.id)}; _ga=GA1.2` });
    await run(ctx);
    assert.deepEqual(ctx.session, s);
    assert.equal(ctx.setCookies, null);
  });

  test('a second request with the same cookie finds the session again', async () => {
    const s = await stored('app');
    const cookie = h.sessionCookie('app', s.id);
    for (let i = 0; i < 2; i++) {
      const ctx = h.proxy('app', '/x', { cookie });
      await run(ctx);
      assert.deepEqual(ctx.session, s);
    }
  });

  test('forward-auth entries read the cookie the reverse proxy passes', async () => {
    const s = await stored('fwd');
    const ctx = h.nginx('https://fwd.localtest/x', { cookie: h.sessionCookie('fwd', s.id) });
    await run(ctx);
    assert.deepEqual(ctx.session, s);
    const dom = await stored('dom');
    const wiki = h.traefik('https://wiki.corp.localtest/x', { cookie: h.sessionCookie('dom', dom.id) });
    await run(wiki);
    assert.deepEqual(wiki.session, dom);
  });
});

describe('cookies that name no live session → no session and a clearing Set-Cookie', () => {
  test('garbage', async () => {
    for (const value of ['garbage', 'a.b.c', '%E0%A4%A', '%%%', 'x'.repeat(500)]) {
      const ctx = h.proxy('app', '/x', { cookie: `${h.provider('app').cookieName}=${value}` });
      await run(ctx);
      assert.equal(ctx.session, null, value);
      assertCleared(ctx);
    }
  });

  test('a tampered cookie', async () => {
    const s = await stored('app');
    const cookie = h.sessionCookie('app', s.id);
    const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
    const i = Math.floor(value.length / 2);
    const flipped = value.slice(0, i) + (value[i] === 'A' ? 'B' : 'A') + value.slice(i + 1);
    const ctx = h.proxy('app', '/x', { cookie: `${h.provider('app').cookieName}=${encodeURIComponent(flipped)}` });
    await run(ctx);
    assert.equal(ctx.session, null);
    assertCleared(ctx);
  });

  test('another provider\'s cookie value under this provider\'s name (other keys)', async () => {
    const s = await stored('app');
    const foreign = h.sessionCookie('other', s.id); // encoded with other's codec, naming an app session
    const ctx = h.proxy('app', '/x', { cookie: `${h.provider('app').cookieName}=${foreign.slice(foreign.indexOf('=') + 1)}` });
    await run(ctx);
    assert.equal(ctx.session, null);
    assertCleared(ctx);
  });

  test('a genuine cookie naming another provider\'s session', async () => {
    const otherSession = await stored('other');
    const ctx = h.proxy('app', '/x', { cookie: h.sessionCookie('app', otherSession.id) });
    await run(ctx);
    assert.equal(ctx.session, null, 'a session of provider "other" is not a session of "app"');
    assertCleared(ctx);
  });

  test('an unknown id', async () => {
    const ctx = h.proxy('app', '/x', { cookie: h.sessionCookie('app', 'no-such-session-id') });
    await run(ctx);
    assert.equal(ctx.session, null);
    assertCleared(ctx);
  });

  test('an expired record', async () => {
    const s = await stored('app', { expiresAt: Date.now() - 1 });
    const ctx = h.proxy('app', '/x', { cookie: h.sessionCookie('app', s.id) });
    await run(ctx);
    assert.equal(ctx.session, null);
    assertCleared(ctx);
  });

  test('a session deleted after its cookie was seen (the decoded-id cache keeps nothing alive)', async () => {
    const s = await stored('app');
    const cookie = h.sessionCookie('app', s.id);
    const before = h.proxy('app', '/x', { cookie });
    await run(before);
    assert.deepEqual(before.session, s);
    await h.store.delete(s.id);
    const afterDelete = h.proxy('app', '/x', { cookie });
    await run(afterDelete);
    assert.equal(afterDelete.session, null);
    assertCleared(afterDelete);
  });

  test('the same cookie value on another provider\'s host is not decoded with that provider\'s keys', async () => {
    const s = await stored('app');
    const appCookie = h.sessionCookie('app', s.id);
    const value = appCookie.slice(appCookie.indexOf('=') + 1);
    // First seen (and cached) on app, then replayed under other's cookie name.
    await run(h.proxy('app', '/x', { cookie: appCookie }));
    const ctx = h.proxy('other', '/x', { cookie: `${h.provider('other').cookieName}=${value}` });
    await run(ctx);
    assert.equal(ctx.session, null);
    assertCleared(ctx, 'other');
  });
});

test('another provider\'s cookie (its own name) on this host is ignored, not cleared', async () => {
  const s = await stored('other');
  const ctx = h.proxy('app', '/x', { cookie: h.sessionCookie('other', s.id) });
  await run(ctx);
  assert.equal(ctx.session, null);
  assert.equal(ctx.setCookies, null);
});

describe('an asynchronous session store (e.g. Redis)', () => {
  let asyncHarness: Harness;
  let asyncAuth: Stage;

  before(async () => {
    asyncHarness = await createHarness({ discover: false, wrapStore: asyncStore });
    asyncAuth = asyncHarness.stage('auth');
  });
  after(() => asyncHarness.close());

  test('the stage answers with a promise and sets the session', async () => {
    const s = asyncHarness.session('app');
    await asyncHarness.store.put(s);
    const ctx = asyncHarness.proxy('app', '/x', { cookie: asyncHarness.sessionCookie('app', s.id) });
    const out = asyncAuth.run(ctx);
    assert.ok(out instanceof Promise, 'a promise from get() is awaited');
    assert.equal(await out, CONTINUE);
    assert.equal(ctx.session, s);
  });

  test('an unknown id or an expired record still clears the cookie', async () => {
    const expired = asyncHarness.session('app', { expiresAt: Date.now() - 1000 });
    await asyncHarness.store.put(expired);
    for (const id of ['unknown', expired.id]) {
      const ctx = asyncHarness.proxy('app', '/x', { cookie: asyncHarness.sessionCookie('app', id) });
      await run(ctx, asyncAuth);
      assert.equal(ctx.session, null, id);
      assert.ok(ctx.setCookies?.[0]?.startsWith(`${asyncHarness.provider('app').cookieName}=; Max-Age=0`), id);
    }
  });
});

/** The memory store behind a promise-returning get(), which also returns expired records (the stage must check). */
function asyncStore(inner: EmbeddedSessionStore): SessionStore {
  const all = new Map<string, SessionRecord>();
  return {
    open: () => inner.open(),
    close: () => inner.close(),
    get: async (id) => all.get(id),
    put: async (r) => {
      all.set(r.id, r);
      await inner.put(r);
    },
    delete: async (id) => {
      all.delete(id);
      await inner.delete(id);
    },
    deleteUser: (u) => inner.deleteUser(u),
    size: () => all.size,
    recordHeaderNames: (names) => inner.recordHeaderNames(names),
    headerNames: () => inner.headerNames(),
    deleteBySid: (p, sid) => inner.deleteBySid(p, sid),
    deleteProviderUser: (p, u) => inner.deleteProviderUser(p, u),
    recordOnce: (k, x) => inner.recordOnce(k, x),
    lockRefresh: (id, ttl) => inner.lockRefresh(id, ttl),
    unlockRefresh: (id, t) => inner.unlockRefresh(id, t),
  };
}
