// request.log as the outpost gives it to Fastify: the pino child (with reqId) is made only when a
// line at an enabled level is written, and that line is the one pino's own child would write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { lazyChildLoggerFactory } from '../../src/server/request-logger.js';

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const parent = pino({ level, base: { outpost: 'o' } }, out);
  let children = 0;
  const child = parent.child.bind(parent);
  parent.child = ((...a: Parameters<typeof child>) => (children++, child(...a))) as typeof parent.child;
  return { parent: parent as unknown as FastifyBaseLogger, lines, children: () => children };
}

test('no child logger until a line at an enabled level is written; then the line carries reqId', async () => {
  const { parent, lines, children } = capture('warn');
  const log = lazyChildLoggerFactory(parent, { reqId: 'r-1' }, {});
  log.info({ a: 1 }, 'below the level');
  log.debug('below the level');
  assert.equal(children(), 0);
  assert.equal(log.level, 'warn');
  log.warn({ upstream: 'http://u' }, 'upstream failed');
  log.error('again');
  assert.equal(children(), 1, 'one child, made once');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    lines.map((l) => [l.reqId, l.outpost, l.msg, l.level]),
    [
      ['r-1', 'o', 'upstream failed', 40],
      ['r-1', 'o', 'again', 50],
    ],
  );
  assert.equal(lines[0]!.upstream, 'http://u');
});

test("a route's own level or serializers get pino's child at once", () => {
  const { parent, children } = capture('info');
  lazyChildLoggerFactory(parent, { reqId: 'r-2' }, { level: 'debug' });
  assert.equal(children(), 1);
});
