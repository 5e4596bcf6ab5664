import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { EmbeddedSessionStore } from '../../src/sessions/embedded-store.js';
import type { SessionRecord } from '../../src/sessions/store.js';
import type { Logger } from '../../src/pipeline/logger.js';

const log = pino({ level: 'silent' }) as unknown as Logger;
const keys = new Map([['app', randomBytes(32)], ['other', randomBytes(32)]]);

function record(id: string, user: string, provider = 'app', ttlMs = 60_000): SessionRecord {
  const now = Date.now();
  return { id, provider, userKey: `iss\u0000${user}`, createdAt: now, expiresAt: now + ttlMs, claims: { sub: user, email: `${user}@example.com` }, idToken: 'header.payload.signature' };
}

test('sessions survive a reopen; deleted ones stay deleted; expired ones are gone', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'store-'));
  const path = join(dir, 'sessions.jsonl');
  try {
    const a = new EmbeddedSessionStore({ path, keys, log });
    await a.open();
    await a.put(record('s1', 'alice'));
    await a.put(record('s2', 'alice', 'other'));
    await a.put(record('s3', 'bob'));
    await a.put(record('s4', 'carol', 'app', 30));
    assert.equal(await a.deleteUser('iss\u0000alice'), 2);
    await a.close();
    await new Promise((r) => setTimeout(r, 50));
    const b = new EmbeddedSessionStore({ path, keys, log });
    await b.open();
    assert.equal(b.get('s1'), undefined);
    assert.equal(b.get('s2'), undefined);
    assert.equal(b.get('s3')?.claims.email, 'bob@example.com');
    assert.equal(b.get('s4'), undefined, 'expired');
    assert.equal(b.size(), 1);
    await b.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the journal holds no claims or tokens in clear, and a torn line is survived', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'store-'));
  const path = join(dir, 'sessions.jsonl');
  try {
    const a = new EmbeddedSessionStore({ path, keys, log });
    await a.open();
    await a.put(record('s1', 'alice'));
    await a.close();
    const text = readFileSync(path, 'utf8');
    assert.doesNotMatch(text, /alice@example\.com|header\.payload\.signature/);
    appendFileSync(path, '{"op":"put","p":"app","id":"s9","x":9999999999999,"d":"AAAA'); // a crash mid-write
    const b = new EmbeddedSessionStore({ path, keys, log });
    await b.open();
    assert.equal(b.get('s1')?.claims.sub, 'alice');
    assert.equal(b.get('s9'), undefined);
    await b.close();
    // Another key (cookie_secret rotated): the sessions cannot be read and are dropped.
    const c = new EmbeddedSessionStore({ path, keys: new Map([['app', randomBytes(32)]]), log });
    await c.open();
    assert.equal(c.size(), 0);
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('additionalHeaders names survive a reopen and the compaction; an older journal teaches the names of its live sessions', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'store-'));
  const path = join(dir, 'sessions.jsonl');
  try {
    const a = new EmbeddedSessionStore({ path, keys, log });
    await a.open();
    const live = a.headerNames();
    await a.recordHeaderNames(['x-team']);
    await a.recordHeaderNames(['x-team', 'x-tenant']);
    assert.deepEqual([...live].sort(), ['x-team', 'x-tenant'], 'the same Set, updated in place');
    await a.close();
    for (let i = 0; i < 2; i++) {
      // Twice: the second open reads the journal that the first one compacted.
      const b = new EmbeddedSessionStore({ path, keys, log });
      await b.open();
      assert.deepEqual([...b.headerNames()].sort(), ['x-team', 'x-tenant']);
      await b.close();
    }
    // A journal from before names were recorded: a live session's additionalHeaders names count.
    rmSync(path);
    const c = new EmbeddedSessionStore({ path, keys, log });
    await c.open();
    await c.put({ ...record('s1', 'alice'), proxy: { additionalHeaders: [['x-dept', 'ops']] } });
    await c.close();
    const d = new EmbeddedSessionStore({ path, keys, log });
    await d.open();
    assert.deepEqual([...d.headerNames()], ['x-dept']);
    await d.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
