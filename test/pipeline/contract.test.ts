// The stage contract as a third-party author meets it: the plain factory and its deps, what a
// hostile stage can reach (no secret by any route), one Ajv with formats, declared reads and
// writes (refused orders at load, undeclared writes at run time) and per-provider options.
// Outpost.create builds the chain as production does; no server listens, the IdP is never asked.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { stringify } from 'yaml';
import { parseConfig, ConfigError } from '../../src/config/index.js';
import { Outpost } from '../../src/server/outpost.js';
import { EmbeddedSessionStore } from '../../src/sessions/embedded-store.js';
import { StageRegistry } from '../../src/pipeline/registry.js';
import { runStages } from '../../src/pipeline/chain.js';
import { builtInDeps } from '../../src/pipeline/built-in.js';
import { CONTEXT_FIELDS, CONTINUE, defineStage, type RequestContext, type StageDefinition, type StageDeps } from '../../src/pipeline/contract.js';
import { AUTH_EVENTS, CONFIG, PROVIDERS, PROVIDER_VIEWS, SESSION_READER, SESSION_STORE, STAGE_OPTIONS, VERSION, WEBSOCKETS, LOGGER } from '../../src/pipeline/tokens.js';
import { quietLogger } from '../support/stack.js';
import type { Logger } from '../../src/pipeline/logger.js';

const CLIENT_SECRET = 'client-secret-that-no-stage-may-see';
const COOKIE_SECRET = 'cookie-secret-that-no-stage-may-see-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'portcullis-contract-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const silent = quietLogger() as unknown as Logger;

const BUILT_INS = ['allowlist', 'access_rules', 'headers'];

function yaml(pipeline: unknown[]): string {
  const provider = (name: string, host: string, extra: Record<string, unknown> = {}) => ({
    name,
    issuer: 'http://127.0.0.1:9/application/o/app/',
    client_id: `client-${name}`,
    client_secret: CLIENT_SECRET,
    cookie_secret: COOKIE_SECRET,
    external_host: `https://${host}`,
    internal_host: 'http://127.0.0.1:9',
    skip_path_regex: '^/public/',
    ...extra,
  });
  return stringify({
    outpost: { name: 'contract outpost', listeners: { http: null, https: null }, log_level: 'silent' },
    providers: [provider('app', 'app.localtest'), provider('other', 'other.localtest')],
    pipeline,
  });
}

/** The config file as written: `stage.yaml` in a temp directory (errors then name its lines). */
function configOf(pipeline: unknown[]) {
  const text = yaml(pipeline);
  writeFileSync(join(dir, 'stage.yaml'), text);
  return { text, config: parseConfig(text, { source: 'stage.yaml', baseDir: dir, env: {} }) };
}

const opened: Outpost[] = [];
after(async () => {
  for (const o of opened) await o.close().catch(() => undefined);
});

async function outpostWith(defs: StageDefinition<any>[], pipeline: unknown[]): Promise<Outpost> {
  const registry = new StageRegistry();
  for (const d of defs) registry.register(d);
  const { config } = configOf(pipeline);
  const store = new EmbeddedSessionStore({ path: null, keys: new Map(), log: silent });
  const outpost = await Outpost.create(config, { logger: quietLogger(), store, registry });
  opened.push(outpost);
  return outpost;
}

async function startError(defs: StageDefinition<any>[], pipeline: unknown[]): Promise<ConfigError> {
  try {
    await outpostWith(defs, pipeline);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the start to fail');
}

const withStage = (entry: Record<string, unknown>) => [{ stage: 'auth' }, entry, ...BUILT_INS.map((stage) => ({ stage }))];

function contextFor(outpost: Outpost, host: string, path: string): RequestContext {
  const built = outpost.contexts.build({ method: 'GET', url: path, headers: { host }, socket: { remoteAddress: '127.0.0.1', encrypted: true } }, 'req-1');
  assert.ok(!('kind' in built), 'a context');
  return built;
}

/** The line of `needle` in the config text (1-based). */
function lineOf(text: string, needle: string, from = 0): number {
  const at = text.indexOf(needle, from);
  assert.ok(at >= 0, `"${needle}" in the config`);
  return text.slice(0, at).split('\n').length;
}

// ---------------------------------------------------------------------------------------------
// The plain factory
// ---------------------------------------------------------------------------------------------

test('create(deps, options) gets plain deps: logger, provider views, per-provider options, a session reader, and a container for DI users', async () => {
  let seen: { deps: StageDeps<{ greeting: string }>; options: { greeting: string } } | undefined;
  const stage = defineStage<{ greeting: string }>({
    name: 'greeter',
    optionsSchema: Type.Object({ greeting: Type.String({ default: 'hello' }) }, { additionalProperties: false }),
    create(deps, options) {
      seen = { deps, options };
      return { name: 'greeter', run: () => CONTINUE };
    },
  });
  const outpost = await outpostWith([stage], withStage({ stage: 'greeter' }));
  assert.ok(seen);
  const { deps, options } = seen;
  assert.deepEqual(options, { greeting: 'hello' }, 'schema defaults applied');
  assert.deepEqual(
    deps.providers.map((p) => [p.index, p.name, p.externalHost, p.mode]),
    [
      [0, 'app', 'app.localtest', 'proxy'],
      [1, 'other', 'other.localtest', 'proxy'],
    ],
  );
  assert.deepEqual(deps.providerOptions, [options, options], 'no override: every provider has the entry options');
  assert.equal(deps.outpostName, 'contract outpost');
  assert.equal(typeof deps.version, 'string');
  assert.ok(Object.isFrozen(deps));
  // The same provider views are the requests' ctx.provider.
  const ctx = contextFor(outpost, 'other.localtest', '/x');
  assert.equal(ctx.provider, deps.providers[1]);
  // The session reader reads what the store holds, and is only a reader.
  const now = Date.now();
  await outpost.store.put({ id: 'sid-1', provider: 'app', userKey: 'iss\u0000u', createdAt: now, expiresAt: now + 60_000, claims: { sub: 'u' } as never, idToken: 'x', refreshToken: 'refresh-token-no-stage-may-read' });
  const read = await deps.sessions.get('sid-1');
  assert.equal(read?.provider, 'app');
  assert.equal(read?.idToken, 'x');
  assert.equal(read?.refreshToken, undefined, 'the reader hands out no refresh token');
  assert.equal((await outpost.store.get('sid-1'))?.refreshToken, 'refresh-token-no-stage-may-read', 'the store keeps it');
  assert.deepEqual(Object.keys(deps.sessions), ['get']);
  // DI stays available: the public tokens resolve in the stage's container.
  assert.equal(deps.container.resolve(STAGE_OPTIONS), options);
  assert.equal(deps.container.resolve(PROVIDER_VIEWS), deps.providers);
  assert.equal(deps.container.resolve(SESSION_READER), deps.sessions);
  assert.equal(deps.container.resolve(VERSION), deps.version);
  assert.equal(deps.container.resolve(LOGGER), deps.logger);
});

// ---------------------------------------------------------------------------------------------
// What a hostile third-party stage can reach
// ---------------------------------------------------------------------------------------------

/**
 * Everything reachable from `roots` by properties (own, symbol-keyed, accessors read), prototypes,
 * and Map/Set contents; what matches `isSecret` is reported with its path. Functions' closures
 * are not reachable from JavaScript, so this is what a stage can get without importing internals.
 */
function reachable(roots: Record<string, unknown>, isSecret: (v: unknown) => string | null): string[] {
  const found: string[] = [];
  const seen = new Set<unknown>([globalThis, process]);
  const queue: [unknown, string][] = Object.entries(roots).map(([k, v]) => [v, k]);
  let visited = 0;
  while (queue.length > 0 && visited < 500_000) {
    const [v, path] = queue.shift()!;
    const what = isSecret(v);
    if (what !== null) found.push(`${path}: ${what}`);
    if (v === null || (typeof v !== 'object' && typeof v !== 'function') || seen.has(v)) continue;
    seen.add(v);
    visited++;
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto !== null) queue.push([proto, `${path}.__proto__`]);
    for (const key of Reflect.ownKeys(v as object)) {
      let child: unknown;
      try {
        child = (v as Record<string | symbol, unknown>)[key];
      } catch {
        continue;
      }
      queue.push([child, `${path}.${String(key)}`]);
    }
    if (v instanceof Map) for (const [k, x] of v) queue.push([k, `${path}<key>`], [x, `${path}<${String(k)}>`]);
    if (v instanceof Set) for (const x of v) queue.push([x, `${path}<item>`]);
  }
  assert.ok(visited < 500_000, 'the walk ended');
  return found;
}

test('a hostile third-party stage reaches no client secret, cookie secret, key or codec: not by deps, ctx, prototypes or its container', async () => {
  const attempts: Record<string, unknown> = {};
  let roots: Record<string, unknown> = {};
  const hostile = defineStage({
    name: 'hostile',
    reads: ['session'],
    create(deps) {
      roots = { deps };
      // The internal tokens resolve nothing in a third-party stage's container.
      for (const [name, token] of Object.entries({ CONFIG, PROVIDERS, SESSION_STORE, AUTH_EVENTS, WEBSOCKETS })) {
        try {
          attempts[name] = deps.container.resolve(token as symbol);
        } catch (err) {
          attempts[name] = err instanceof Error ? 'refused' : err;
        }
      }
      // Nor by the same symbols made again, nor by the built-in route with these deps.
      try {
        attempts.symbolFor = deps.container.resolve(Symbol.for('portcullis.providers'));
      } catch {
        attempts.symbolFor = 'refused';
      }
      try {
        attempts.builtInRoute = builtInDeps(deps);
      } catch {
        attempts.builtInRoute = 'refused';
      }
      return {
        name: 'hostile',
        run(ctx) {
          roots = { ...roots, ctx, provider: ctx.provider, providerProto: Object.getPrototypeOf(ctx.provider) };
          return CONTINUE;
        },
      };
    },
  });
  const outpost = await outpostWith([hostile], withStage({ stage: 'hostile' }));
  for (const name of ['CONFIG', 'PROVIDERS', 'SESSION_STORE', 'AUTH_EVENTS', 'WEBSOCKETS', 'symbolFor', 'builtInRoute']) assert.equal(attempts[name], 'refused', name);

  // A signed-in request: the stage sees the session too.
  const now = Date.now();
  await outpost.store.put({ id: 'sid-h', provider: 'app', userKey: 'iss\u0000u', createdAt: now, expiresAt: now + 60_000, claims: { sub: 'u' } as never, idToken: 'x' });
  const app = outpost.providers.byName('app')!;
  const cookie = `${app.cookieName}=${encodeURIComponent(app.sessionCodec.encode({ s: 'sid-h' }))}`;
  const built = outpost.contexts.build({ method: 'GET', url: '/private', headers: { host: 'app.localtest', cookie }, socket: { remoteAddress: '127.0.0.1', encrypted: true } }, 'req-h');
  assert.ok(!('kind' in built));
  await runStages(outpost.stages.map((b) => b.stage), built);
  assert.ok(roots.ctx, 'the stage ran');
  assert.equal((roots.ctx as RequestContext).session?.id, 'sid-h');
  assert.equal(roots.providerProto, Object.prototype);
  assert.ok(Object.isFrozen(roots.provider));

  const forbidden = new Map<unknown, string>();
  for (const p of outpost.providers.all) {
    forbidden.set(p, `the runtime of ${p.name}`);
    forbidden.set(p.config, `the config of ${p.name}`);
    forbidden.set(p.sessionCodec, `the session codec of ${p.name}`);
    forbidden.set(p.flowCodec, `the flow codec of ${p.name}`);
    forbidden.set(p.oidc, `the OpenID client of ${p.name}`);
  }
  forbidden.set(outpost.providers, 'the provider registry');
  forbidden.set(outpost.store, 'the session store');
  const keys = outpost.providers.all.map((p) => p.stateKey);
  const found = reachable(roots, (v) => {
    if (v === CLIENT_SECRET) return 'the client secret';
    if (v === COOKIE_SECRET) return 'the cookie secret';
    if (typeof v === 'string' && (v.includes(CLIENT_SECRET) || v.includes(COOKIE_SECRET))) return 'a string holding a secret';
    if (v instanceof Uint8Array && keys.some((k) => Buffer.compare(Buffer.from(v), k) === 0)) return 'a state key';
    return forbidden.get(v) ?? null;
  });
  assert.deepEqual(found, []);
});

test('built-in stages still reach what they need by the internal route', async () => {
  const outpost = await outpostWith([], ['auth', ...BUILT_INS].map((stage) => ({ stage })));
  // The auth stage decodes the session cookie: it holds the codec's provider runtime.
  const app = outpost.providers.byName('app')!;
  const now = Date.now();
  await outpost.store.put({ id: 'sid-b', provider: 'app', userKey: 'iss\u0000u', createdAt: now, expiresAt: now + 60_000, claims: { sub: 'u', preferred_username: 'u' } as never, idToken: 'x' });
  const cookie = `${app.cookieName}=${encodeURIComponent(app.sessionCodec.encode({ s: 'sid-b' }))}`;
  const ctx = outpost.contexts.build({ method: 'GET', url: '/p', headers: { host: 'app.localtest', cookie }, socket: { remoteAddress: '127.0.0.1', encrypted: true } }, 'req-b');
  assert.ok(!('kind' in ctx));
  assert.equal(runStages(outpost.stages.map((b) => b.stage), ctx), CONTINUE);
  assert.equal(ctx.session?.id, 'sid-b');
  assert.equal(ctx.identityHeaders?.['x-authentik-username'], 'u');
});

// ---------------------------------------------------------------------------------------------
// One Ajv, with formats
// ---------------------------------------------------------------------------------------------

const linkStage = defineStage<{ href: string }>({
  name: 'link',
  optionsSchema: Type.Object({ href: Type.String({ format: 'uri' }) }, { additionalProperties: false }),
  create: () => ({ name: 'link', run: () => CONTINUE }),
});

test("format: 'uri' in a stage's options schema is enforced, the error naming the field and its line", async () => {
  const pipeline = withStage({ stage: 'link', options: { href: 'not a uri' } });
  const err = await startError([linkStage], pipeline);
  assert.equal(err.issues.length, 1);
  assert.equal(err.issues[0]!.code, 'config.invalid_stage_options');
  assert.equal(err.issues[0]!.field, 'pipeline[1].options.href');
  assert.match(err.issues[0]!.message, /^link: must match format "uri"/);
  const { text } = configOf(pipeline);
  assert.equal(err.issues[0]!.line, lineOf(text, 'href: not a uri'));
  assert.match(err.message, new RegExp(`line ${err.issues[0]!.line}:\\d+: pipeline\\[1\\]\\.options\\.href`));
  // A URI passes.
  const ok = await outpostWith([linkStage], withStage({ stage: 'link', options: { href: 'https://example.com/help' } }));
  assert.equal(ok.stages[1]!.stage.name, 'link');
});

// ---------------------------------------------------------------------------------------------
// Declared reads and writes
// ---------------------------------------------------------------------------------------------

test('an order where a stage reads a field no earlier stage writes is refused at load, naming pipeline[i].stage', async () => {
  const tooEarly = [{ stage: 'auth' }, { stage: 'allowlist' }, { stage: 'reads-identity' }, ...BUILT_INS.slice(1).map((stage) => ({ stage }))];
  const readsIdentity = defineStage({ name: 'reads-identity', reads: ['identityHeaders'], create: () => ({ name: 'reads-identity', run: () => CONTINUE }) });
  const err = await startError([readsIdentity], tooEarly);
  assert.equal(err.issues.length, 1);
  assert.equal(err.issues[0]!.code, 'config.pipeline_order');
  assert.equal(err.issues[0]!.field, 'pipeline[2].stage');
  assert.equal(err.issues[0]!.message, 'reads-identity reads ctx.identityHeaders, which no earlier stage writes (headers writes it: put reads-identity after headers)');
  const { text } = configOf(tooEarly);
  assert.equal(err.issues[0]!.line, lineOf(text, 'stage: reads-identity'));
  // After the header stage it loads.
  const later = [{ stage: 'auth' }, ...BUILT_INS.slice(0, 3).map((stage) => ({ stage })), { stage: 'reads-identity' }, ...BUILT_INS.slice(3).map((stage) => ({ stage }))];
  assert.equal((await outpostWith([readsIdentity], later)).stages[4]!.stage.name, 'reads-identity');
  // A field that is not a context field is refused too.
  const typo = defineStage({ name: 'typo', reads: ['sesion' as never], create: () => ({ name: 'typo', run: () => CONTINUE }) });
  const bad = await startError([typo], withStage({ stage: 'typo' }));
  assert.equal(bad.issues[0]!.code, 'config.stage_fields');
  assert.match(bad.issues[0]!.message, /typo declares "sesion", which is not a context field/);
});

test('the built-in stages declare what they read and write, and the default order satisfies them', async () => {
  const outpost = await outpostWith([], ['auth', ...BUILT_INS].map((stage) => ({ stage })));
  const decl = Object.fromEntries(outpost.stages.map((b) => [b.definition.name, { reads: b.definition.reads, writes: b.definition.writes }]));
  assert.deepEqual(decl.auth!.writes, ['session', 'headerAuth', 'sessionUnavailable', 'setCookies']);
  assert.deepEqual(decl.allowlist!.reads, ['session']); // its CHALLENGE is answered by the exit, which reads the auth verdict
  assert.deepEqual(decl.headers!.writes, ['identityHeaders', 'upstreamHeaders']);
  // After auth (which must come first), any order of the built-in stages satisfies their reads.
  const reordered = await outpostWith([], ['auth', 'headers', 'access_rules', 'allowlist'].map((stage) => ({ stage })));
  assert.deepEqual(reordered.stages.map((b) => b.stage.name), ['auth', 'headers', 'access_rules', 'allowlist']);
});

test('the built-in stages read and assign only the context fields they declare (traced over anonymous, signed-in and stale-cookie requests)', async () => {
  const outpost = await outpostWith([], ['auth', ...BUILT_INS].map((stage) => ({ stage })));
  const app = outpost.providers.byName('app')!;
  const now = Date.now();
  await outpost.store.put({ id: 'sid-t', provider: 'app', userKey: 'iss\u0000u', createdAt: now, expiresAt: now + 60_000, claims: { sub: 'u', preferred_username: 'u' } as never, idToken: 'x' });
  const cookieFor = (id: string) => `${app.cookieName}=${encodeURIComponent(app.sessionCodec.encode({ s: id }))}`;
  const fields = new Set<string>(CONTEXT_FIELDS);
  const reads = new Map<string, Set<string>>();
  const writes = new Map<string, Set<string>>();
  const traced = async (path: string, headers: Record<string, string> = {}) => {
    const ctx = outpost.contexts.build({ method: 'GET', url: path, headers: { host: 'app.localtest', ...headers }, socket: { remoteAddress: '127.0.0.1', encrypted: true } }, 'req-t');
    assert.ok(!('kind' in ctx));
    for (const b of outpost.stages) {
      const name = b.definition.name;
      const r = reads.get(name) ?? reads.set(name, new Set()).get(name)!;
      const w = writes.get(name) ?? writes.set(name, new Set()).get(name)!;
      const view = new Proxy(ctx, {
        get(target, key, receiver) {
          if (typeof key === 'string' && fields.has(key)) r.add(key);
          return Reflect.get(target, key, receiver);
        },
        set(target, key, value, receiver) {
          w.add(String(key));
          return Reflect.set(target, key, value, receiver);
        },
      });
      const out = await b.stage.run(view);
      if (out.kind !== 'continue') return out; // an answer, or CHALLENGE
    }
    return CONTINUE;
  };
  assert.equal(await traced('/public/a'), CONTINUE);
  assert.equal((await traced('/private')) === CONTINUE, false, 'an anonymous protected path is challenged');
  assert.equal(await traced('/private', { cookie: cookieFor('sid-t') }), CONTINUE);
  assert.equal(await traced('/public/b', { cookie: cookieFor('no-such-session') }), CONTINUE);
  for (const b of outpost.stages) {
    const d = b.definition;
    const declaredWrites = new Set<string>(d.writes ?? []);
    const declared = new Set<string>([...(d.reads ?? []), ...declaredWrites]);
    for (const f of writes.get(d.name)!) assert.ok(declaredWrites.has(f), `${d.name} assigned ctx.${f} without declaring it`);
    for (const f of reads.get(d.name)!) assert.ok(declared.has(f), `${d.name} read ctx.${f} without declaring it`);
  }
  // The trace saw the writes that matter (so it would have seen an undeclared one).
  assert.deepEqual([...writes.get('auth')!].sort(), ['session', 'setCookies']);
  assert.deepEqual([...writes.get('allowlist')!], ['allowlisted']);
  assert.deepEqual([...writes.get('headers')!].sort(), ['identityHeaders', 'upstreamHeaders']);
});

test('at run time a third-party stage that assigns a field it did not declare fails the request; declared writes pass', async () => {
  const sneaky = defineStage({
    name: 'sneaky',
    writes: ['setCookies'],
    create: () => ({
      name: 'sneaky',
      run(ctx) {
        ctx.setCookies = ['x=1'];
        if (ctx.target.path === '/elevate') ctx.allowlisted = true;
        return CONTINUE;
      },
    }),
  });
  const asyncSneaky = defineStage({
    name: 'async-sneaky',
    create: () => ({
      name: 'async-sneaky',
      async run(ctx) {
        await new Promise((r) => setImmediate(r));
        if (ctx.target.path === '/elevate') ctx.session = null;
        if (ctx.target.path === '/elevate-async') ctx.identityHeaders = {};
        return CONTINUE;
      },
    }),
  });
  const outpost = await outpostWith([sneaky, asyncSneaky], [{ stage: 'auth' }, { stage: 'sneaky' }, { stage: 'async-sneaky' }, ...BUILT_INS.map((stage) => ({ stage }))]);
  const stages = outpost.stages.map((b) => b.stage);
  // The wrapper keeps the stage's name (and its other properties, by prototype).
  assert.deepEqual(stages.map((s) => s.name).slice(0, 3), ['auth', 'sneaky', 'async-sneaky']);
  const ok = contextFor(outpost, 'app.localtest', '/public/a');
  assert.equal(await runStages(stages, ok), CONTINUE);
  assert.deepEqual(ok.setCookies, ['x=1']);
  assert.throws(() => runStages(stages, contextFor(outpost, 'app.localtest', '/elevate')), /stage "sneaky" assigned ctx\.allowlisted, which its definition does not declare in writes/);
  await assert.rejects(Promise.resolve(runStages(stages, contextFor(outpost, 'app.localtest', '/elevate-async'))), /stage "async-sneaky" assigned ctx\.identityHeaders/);
});

// ---------------------------------------------------------------------------------------------
// Per-provider options
// ---------------------------------------------------------------------------------------------

const banner = defineStage<{ text: string; level: number; tags?: string[] }>({
  name: 'banner',
  optionsSchema: Type.Object(
    { text: Type.String({ minLength: 1 }), level: Type.Integer({ minimum: 0, default: 1 }), tags: Type.Optional(Type.Array(Type.String())) },
    { additionalProperties: false },
  ),
  create(deps) {
    const text = deps.providerOptions.map((o) => `${o.text}/${o.level}`);
    return { name: 'banner', run: (ctx) => (ctx.target.path === '/banner' ? { kind: 'respond', status: 200, body: text[ctx.provider.index]! } : CONTINUE) };
  },
});

test('per-provider options: providers.<name> is merged over options for that provider only, validated as a whole', async () => {
  const outpost = await outpostWith([banner], withStage({ stage: 'banner', options: { text: 'everyone', tags: ['a'] }, providers: { other: { text: 'just other', level: 3 } } }));
  const answer = (host: string) => runStages(outpost.stages.map((b) => b.stage), contextFor(outpost, host, '/banner')) as { body: string };
  assert.equal(answer('app.localtest').body, 'everyone/1');
  assert.equal(answer('other.localtest').body, 'just other/3');
});

test('per-provider option errors name pipeline[i].providers.<name>.<field> and its line; unknown providers are refused', async () => {
  const pipeline = withStage({ stage: 'banner', options: { text: 'everyone' }, providers: { other: { level: -1 } } });
  const err = await startError([banner], pipeline);
  assert.equal(err.issues.length, 1);
  assert.equal(err.issues[0]!.field, 'pipeline[1].providers.other.level');
  assert.match(err.issues[0]!.message, /^banner: must be >= 0/);
  const { text } = configOf(pipeline);
  assert.equal(err.issues[0]!.line, lineOf(text, 'level: -1'));

  const unknownKey = await startError([banner], withStage({ stage: 'banner', options: { text: 'x' }, providers: { other: { txt: 'y' } } }));
  assert.equal(unknownKey.issues[0]!.field, 'pipeline[1].providers.other');
  assert.match(unknownKey.issues[0]!.message, /must NOT have additional properties \("txt"\)/);

  const unknownProvider = await startError([banner], withStage({ stage: 'banner', options: { text: 'x' }, providers: { nobody: { text: 'y' } } }));
  assert.equal(unknownProvider.issues[0]!.code, 'config.unknown_provider');
  assert.equal(unknownProvider.issues[0]!.field, 'pipeline[1].providers.nobody');
  assert.match(unknownProvider.issues[0]!.message, /no provider is named "nobody" \(providers: app, other\)/);

  // The entry's own options are checked by themselves (they apply to providers without an override).
  const base = await startError([banner], withStage({ stage: 'banner', options: { level: 2 }, providers: { app: { text: 'a' }, other: { text: 'b' } } }));
  assert.equal(base.issues[0]!.field, 'pipeline[1].options');
  assert.match(base.issues[0]!.message, /must have required property 'text'/);

  // The config schema itself: an override must be a mapping.
  assert.throws(
    () => parseConfig(yaml(withStage({ stage: 'banner', options: { text: 'x' }, providers: { other: 'loud' } })), { source: 'stage.yaml', baseDir: dir, env: {} }),
    (e: unknown) => e instanceof ConfigError && e.issues.some((i) => i.field === 'pipeline[1].providers.other'),
  );
});
