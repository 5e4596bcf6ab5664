// The example third-party stage (examples/client-ip-allowlist), used as a real third party uses
// it: Portcullis is built as its package (dist/ with declarations, package.json, bin) into an
// empty node_modules, the example is copied next to it as the package
// `portcullis-client-ip-allowlist` and compiled there by tsc against the built package's
// `.d.ts` — so it sees only what `import ... from 'portcullis'` exposes — and the installed
// `portcullis` command (plain Node, no TypeScript loader) loads it by package name from
// `pipeline:`. The package's dependencies are this checkout's node_modules, linked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { stringify } from 'yaml';
import { ROOT, startCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { httpGet } from '../support/browserless.js';
import { startUpstream, type RunningUpstream } from '../support/upstream.js';

const work = mkdtempSync(join(tmpdir(), 'portcullis-example-stage-'));
const modules = join(work, 'node_modules');
const portcullisPkg = join(modules, 'portcullis');
const examplePkg = join(modules, 'portcullis-client-ip-allowlist');
const bin = join(portcullisPkg, 'bin', 'portcullis.js');
const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
let upstream: RunningUpstream;

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME }, maxBuffer: 16 * 1024 * 1024, timeout: 300_000 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, out: stdout + stderr });
    });
  });
}

const link = (name: string) => {
  mkdirSync(dirname(join(modules, name)), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules', name), join(modules, name));
};

before(async () => {
  // Portcullis's package: what `npm pack` ships (dist/src compiled with declarations, bin, package.json).
  const built = await run(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(portcullisPkg, 'dist')], ROOT);
  assert.equal(built.code, 0, built.out);
  copyFileSync(join(ROOT, 'package.json'), join(portcullisPkg, 'package.json'));
  cpSync(join(ROOT, 'bin'), join(portcullisPkg, 'bin'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(portcullisPkg, 'node_modules'));
  // The example's own dependencies, and what compiling it needs.
  for (const name of ['@sinclair/typebox', 'proxy-addr', '@types/proxy-addr', '@types/node']) link(name);
  mkdirSync(examplePkg);
  for (const f of ['index.ts', 'package.json']) copyFileSync(join(ROOT, 'examples/client-ip-allowlist', f), join(examplePkg, f));
  writeFileSync(
    join(examplePkg, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, declaration: true, esModuleInterop: true, skipLibCheck: true, types: ['node'] },
      files: ['index.ts'],
    }),
  );
  const compiled = await run(process.execPath, [tsc, '-p', join(examplePkg, 'tsconfig.json')], examplePkg);
  assert.equal(compiled.code, 0, compiled.out);
  upstream = await startUpstream();
});

after(async () => {
  await upstream?.close();
  rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// The package surface
// ---------------------------------------------------------------------------------------------

/** Files and packages a `.d.ts` references, transitively within the package. */
function declarationClosure(entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(join(dirname(file), spec.replace(/\.js$/, '.d.ts')));
      else packages.add(spec);
    }
  };
  visit(entry);
  return { files: [...files].map((f) => relative(join(portcullisPkg, 'dist/src'), f)).sort(), packages: [...packages].sort() };
}

test("the built 'portcullis' entry point's .d.ts drags in the stage contract only: no internal module, no openid-client, no fastify", () => {
  const { files, packages } = declarationClosure(join(portcullisPkg, 'dist/src/index.d.ts'));
  assert.deepEqual(files, ['http/pages.d.ts', 'index.d.ts', 'pipeline/contract.d.ts', 'pipeline/logger.d.ts', 'pipeline/registry.d.ts', 'pipeline/stage-tokens.d.ts', 'sessions/store.d.ts', 'version.d.ts']);
  for (const p of packages) assert.ok(['@sinclair/typebox', 'node:http', 'tsyringe'].includes(p), `package ${p} in the public types`);
  // Neither the OpenID client nor Fastify: a stage is no Fastify plugin of its own.
  assert.ok(!packages.includes('openid-client'));
  assert.ok(!packages.includes('fastify'));
  // The embedding API is its own entry point, `portcullis/embed`.
  const pkg = JSON.parse(readFileSync(join(portcullisPkg, 'package.json'), 'utf8')) as { exports: Record<string, { types: string; default: string }> };
  assert.ok(existsSync(join(portcullisPkg, pkg.exports['./embed']!.types)));
  // The example compiled against that surface alone (tsc in its own package directory).
  assert.ok(existsSync(join(examplePkg, 'index.js')));
  assert.match(readFileSync(join(examplePkg, 'index.js'), 'utf8'), /from 'portcullis'/);
});

// ---------------------------------------------------------------------------------------------
// The installed command with the stage package
// ---------------------------------------------------------------------------------------------

interface ConfigOpts {
  entry: Record<string, unknown>;
  trustedProxies?: string[];
  port?: number;
}

function writeConfig(name: string, o: ConfigOpts): string {
  const provider = (pname: string, host: string) => ({
    name: pname,
    issuer: 'http://127.0.0.1:9/application/o/app/',
    client_id: pname,
    client_secret: 'secret',
    cookie_secret: '0123456789abcdef0123456789abcdef',
    external_host: `http://${host}:${o.port ?? 9}`,
    internal_host: upstream.url,
    skip_path_regex: '^/public/',
  });
  const file = join(work, name);
  writeFileSync(
    file,
    stringify({
      outpost: {
        listeners: { http: `127.0.0.1:${o.port ?? 9}`, https: null },
        workers: 1,
        session_store: { type: 'embedded', path: join(work, `${name}.db`) },
        trusted_proxies: o.trustedProxies ?? [],
      },
      providers: [provider('app', 'app.localtest'), provider('office', 'office.localtest')],
      pipeline: [{ stage: 'auth' }, { stage: 'portcullis-client-ip-allowlist', ...o.entry }, ...['allowlist', 'access_rules', 'headers'].map((stage) => ({ stage }))],
    }),
  );
  return file;
}

async function serve(name: string, o: ConfigOpts): Promise<{ get: (host: string, path: string, headers?: Record<string, string>) => ReturnType<typeof httpGet>; stop: () => Promise<unknown> }> {
  const port = await freePort();
  const file = writeConfig(name, { ...o, port });
  const server = await startCli(['--config', file], /Portcullis is listening/, { bin, cwd: work });
  return {
    get: (host, path, headers = {}) => httpGet(`http://${host}:${port}${path}`, { headers, resolve: { [host]: '127.0.0.1' } }),
    stop: () => server.stop(),
  };
}

test('loaded by package name: allowed clients pass, per-provider options refuse others with 403 (HTML and JSON), a spoofed X-Forwarded-For changes nothing', async () => {
  const server = await serve('serve.yaml', {
    entry: { options: { allow: ['127.0.0.0/8', '::1'] }, providers: { office: { allow: ['10.0.0.0/8'], message: 'Office network only.' } } },
  });
  try {
    const allowed = await server.get('app.localtest', '/public/page?x=1');
    assert.equal(allowed.status, 200);
    assert.equal((JSON.parse(allowed.body) as { url: string }).url, '/public/page?x=1');
    // A protected path is not let through by this stage alone: the allowlist still challenges.
    const challenged = await server.get('app.localtest', '/reports');
    assert.equal(challenged.status, 302);
    assert.match(String(challenged.headers.location), /\/outpost\.goauthentik\.io\/start\?rd=/);

    const html = await server.get('office.localtest', '/public/page');
    assert.equal(html.status, 403);
    assert.match(String(html.headers['content-type']), /^text\/html/);
    assert.match(html.body, /Office network only\./);
    const json = await server.get('office.localtest', '/public/page', { accept: 'application/json' });
    assert.equal(json.status, 403);
    const body = JSON.parse(json.body) as { error: string; message: string; request_id: string };
    assert.equal(body.error, 'client_ip.denied');
    assert.equal(body.message, 'Office network only.');
    assert.ok(body.request_id.length > 0);
    const spoofed = await server.get('office.localtest', '/public/page', { 'x-forwarded-for': '10.1.2.3' });
    assert.equal(spoofed.status, 403);
  } finally {
    await server.stop();
  }
});

test('behind a trusted proxy, the forwarded client address is the one checked', async () => {
  const server = await serve('trusted.yaml', { entry: { options: { allow: ['10.0.0.0/8'] } }, trustedProxies: ['127.0.0.1'] });
  try {
    assert.equal((await server.get('app.localtest', '/public/page', { 'x-forwarded-for': '10.1.2.3' })).status, 200);
    const outside = await server.get('app.localtest', '/public/page', { 'x-forwarded-for': '192.0.2.7' });
    assert.equal(outside.status, 403);
    assert.match(outside.body, /not allowed to reach this application/);
  } finally {
    await server.stop();
  }
});

/** `portcullis --check` with the installed command: exit code and the error lines. */
async function check(name: string, entry: Record<string, unknown>): Promise<{ code: number; out: string; text: string }> {
  const file = writeConfig(name, { entry });
  const result = await run(process.execPath, [bin, '--check', '--config', file], work);
  return { ...result, text: readFileSync(file, 'utf8') };
}

const lineOf = (text: string, needle: string) => text.slice(0, text.indexOf(needle)).split('\n').length;

test('--check: options of the wrong type, unknown or missing options fail, naming pipeline[1].options… and the line', async () => {
  const wrongType = await check('wrong-type.yaml', { options: { allow: 5 } });
  assert.equal(wrongType.code, 1, wrongType.out);
  assert.match(wrongType.out, new RegExp(`line ${lineOf(wrongType.text, 'allow: 5')}:\\d+: pipeline\\[1\\]\\.options\\.allow: client-ip-allowlist: must be array \\[config\\.invalid_stage_options\\]`));

  const unknown = await check('unknown.yaml', { options: { allow: ['10.0.0.0/8'], allowed: ['192.168.0.0/16'] } });
  assert.equal(unknown.code, 1);
  assert.match(unknown.out, /pipeline\[1\]\.options: client-ip-allowlist: must NOT have additional properties \("allowed"\)/);

  const missing = await check('missing.yaml', { options: { message: 'hi' } });
  assert.equal(missing.code, 1);
  assert.match(missing.out, /pipeline\[1\]\.options: client-ip-allowlist: must have required property 'allow'/);
  const empty = await check('empty.yaml', { options: { allow: [] } });
  assert.match(empty.out, /pipeline\[1\]\.options\.allow: client-ip-allowlist: must NOT have fewer than 1 items/);

  const perProvider = await check('per-provider.yaml', { options: { allow: ['10.0.0.0/8'] }, providers: { office: { allow: 'lan' } } });
  assert.equal(perProvider.code, 1);
  assert.match(perProvider.out, new RegExp(`line ${lineOf(perProvider.text, 'allow: lan')}:\\d+: pipeline\\[1\\]\\.providers\\.office\\.allow: client-ip-allowlist: must be array`));
});

test('--check: an address that is not a CIDR stops the start with the offending value; a valid entry passes', async () => {
  const bad = await check('bad-cidr.yaml', { options: { allow: ['10.0.0.0/8', 'office-lan'] } });
  assert.equal(bad.code, 1);
  assert.match(bad.out, /client-ip-allowlist: invalid address or CIDR in "allow": .*office-lan/);
  const badOverride = await check('bad-override.yaml', { options: { allow: ['10.0.0.0/8'] }, providers: { office: { allow: ['lan'] } } });
  assert.equal(badOverride.code, 1);
  assert.match(badOverride.out, /invalid address or CIDR in "allow": .*lan/);
  const ok = await check('ok.yaml', { options: { allow: ['::1', '127.0.0.0/8'] }, providers: { office: { allow: ['10.0.0.0/8'] } } });
  assert.equal(ok.code, 0, ok.out);
  assert.match(ok.out, /OK \(2 providers\)/);
});
