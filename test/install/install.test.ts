// The install paths of README "Install", for real: a packed tarball installed into an empty
// prefix with --omit=dev serves; a checkout's `npm ci --omit=dev` builds dist/ and runs; the
// systemd unit verifies against the installed command; the Dockerfile uses the same commands.
//
// re2 and better-sqlite3 have no prebuilt binary for this machine (no download from here) and
// would compile for minutes in every install — over the time limit on a busy machine: their
// installers' documented settings hand them the binaries this checkout already built (re2:
// RE2_DOWNLOAD_MIRROR, a folder; better-sqlite3's prebuild-install: a local prebuilds folder of
// release-named tarballs). Packages come from npm's cache (--prefer-offline).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ROOT, startCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { httpGet } from '../support/browserless.js';

const work = mkdtempSync(join(tmpdir(), 'portcullis-install-'));
after(() => rmSync(work, { recursive: true, force: true }));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; engines: { node: string } };

const mirror = join(work, 're2-mirror');
mkdirSync(mirror);
writeFileSync(join(mirror, `${process.platform}-${process.arch}-${process.versions.modules}.gz`), gzipSync(readFileSync(join(ROOT, 'node_modules/re2/build/Release/re2.node'))));
const sqlitePrebuilds = join(work, 'better-sqlite3-prebuilds');
mkdirSync(sqlitePrebuilds);
const sqliteDir = join(ROOT, 'node_modules/better-sqlite3');
const sqliteVersion = (JSON.parse(readFileSync(join(sqliteDir, 'package.json'), 'utf8')) as { version: string }).version;
const packedSqlite = spawnSync('tar', ['-czf', join(sqlitePrebuilds, `better-sqlite3-v${sqliteVersion}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`), '-C', sqliteDir, 'build/Release/better_sqlite3.node']);
if (packedSqlite.status !== 0) throw new Error(`packing better-sqlite3's binary failed: ${packedSqlite.stderr}`);
const npmEnv = {
  ...process.env,
  RE2_DOWNLOAD_MIRROR: mirror, RE2_DOWNLOAD_SKIP_PATH: '1', RE2_DOWNLOAD_SKIP_VER: '1',
  npm_config_better_sqlite3_local_prebuilds: sqlitePrebuilds,
  npm_config_update_notifier: 'false',
};

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = npmEnv): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd, env, maxBuffer: 64 * 1024 * 1024, timeout: 280_000 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, out: stdout + stderr });
    });
  });
}

/**
 * The checkout's files (tracked, and new ones not ignored), as `git clone` would give them.
 * Regular files only: a symlinked node_modules (a worktree sharing another's) is not ignored by
 * `node_modules/` and must never be copied — `npm ci` in the copy would empty its target.
 */
function copyCheckout(to: string): void {
  const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' }).stdout.split('\0').filter(Boolean);
  for (const f of files) {
    if (f === 'node_modules' || f.startsWith('node_modules/') || f === 'dist' || f.startsWith('dist/')) continue;
    let st;
    try {
      st = lstatSync(join(ROOT, f));
    } catch {
      continue; // deleted, not yet committed
    }
    if (!st.isFile()) continue;
    mkdirSync(dirname(join(to, f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(to, f));
  }
}

const config = (dir: string, httpPort: number) => {
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `outpost:
  listeners: { http: "127.0.0.1:${httpPort}", https: null }
  session_store: { type: embedded, path: ${JSON.stringify(join(dir, 'state', 'sessions.jsonl'))} }
providers:
  - name: app
    issuer: https://idp.example.com/
    client_id: app
    client_secret: secret
    cookie_secret: 0123456789abcdef0123456789abcdef
    external_host: https://app.example.com
    internal_host: http://127.0.0.1:8080
`,
  );
  return file;
};

let tarball = '';
const prefix = join(work, 'prefix');

test('npm pack compiles and type-checks dist/ into the tarball; nothing of the checkout is needed after', { timeout: 300_000 }, async () => {
  const src = join(work, 'pack-src');
  copyCheckout(src);
  symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  assert.ok(!existsSync(join(src, 'dist')), 'dist/ is committed');
  const packed = await run('npm', ['pack', '--silent', '--pack-destination', work], src);
  assert.equal(packed.code, 0, packed.out);
  tarball = join(work, `portcullis-${pkg.version}.tgz`);
  const list = spawnSync('tar', ['tzf', tarball], { encoding: 'utf8' }).stdout.split('\n');
  for (const f of ['package/bin/portcullis.js', 'package/dist/src/cli.js', 'package/dist/src/index.d.ts', 'package/deploy/portcullis.service', 'package/deploy/Dockerfile', 'package/README.md']) {
    assert.ok(list.includes(f), `${f} not in the tarball`);
  }
  assert.ok(!list.some((f) => f.startsWith('package/src/') || f.startsWith('package/test/')), 'sources or tests in the tarball');
});

test('the tarball installs into an empty prefix with --omit=dev, and serves', { timeout: 300_000 }, async () => {
  assert.ok(tarball, 'pack failed');
  const installed = await run('npm', ['install', '-g', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund', '--prefix', prefix, tarball], work);
  assert.equal(installed.code, 0, installed.out);
  // Engine warnings: only cookie@2's, which declares Node >= 22 as its support policy but is plain
  // ESM that Node >= 20.19 loads (README "Install"). Anything else means `engines` is wrong.
  const badEngines = [...installed.out.matchAll(/EBADENGINE[^\n]*\n[^\n]*package: '([^']+)'/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(badEngines)].map((p) => p!.replace(/@\d.*$/, '')), badEngines.length ? ['cookie'] : []);
  const modules = readdirSync(join(prefix, 'lib/node_modules/portcullis/node_modules'));
  for (const devOnly of ['oidc-provider', 'tsx', 'playwright-core', 'express', 'autocannon', '@types']) assert.ok(!modules.includes(devOnly), `${devOnly} installed`);

  const bin = join(prefix, 'bin', 'portcullis');
  const version = await run(bin, ['--version'], work, process.env);
  assert.deepEqual(version, { code: 0, out: `${pkg.version}\n` });
  const demo = await run(bin, ['--demo'], work, process.env);
  assert.equal(demo.code, 1);
  assert.match(demo.out, /^portcullis: the demo needs the package oidc-provider, a development dependency: .+\n$/);

  const dir = join(work, 'serve');
  mkdirSync(dir);
  const port = await freePort();
  const file = config(dir, port);
  const check = await run(bin, ['--check', '--config', file], dir, process.env);
  assert.deepEqual(check, { code: 0, out: `${file}: OK (1 provider)\n` });
  const server = await startCli(['--config', file], /Portcullis is listening/, { bin, cwd: dir });
  try {
    const ping = await httpGet(`http://127.0.0.1:${port}/outpost.goauthentik.io/ping`);
    assert.equal(ping.status, 204);
  } finally {
    assert.equal(await server.stop(), 0);
  }
});

test('deploy/portcullis.service passes systemd-analyze verify with the installed command', { timeout: 120_000 }, async () => {
  assert.ok(existsSync(join(prefix, 'bin', 'portcullis')), 'install failed');
  const unit = readFileSync(join(ROOT, 'deploy/portcullis.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/portcullis --config /m);
  const dir = join(work, 'systemd');
  mkdirSync(dir);
  const path = join(dir, 'portcullis.service');
  writeFileSync(path, unit.replaceAll('/usr/local/bin/portcullis', join(prefix, 'bin', 'portcullis')));
  // Unknown or misspelled settings are only warnings: the output must be empty too.
  const verify = await run('systemd-analyze', ['verify', path], dir, process.env);
  assert.deepEqual(verify, { code: 0, out: '' });
  const security = await run('systemd-analyze', ['security', '--offline=yes', path], dir, process.env);
  const exposure = Number(/Overall exposure level for portcullis\.service: ([\d.]+)/.exec(security.out)?.[1]);
  assert.ok(exposure <= 2.5, `exposure ${exposure}:\n${security.out}`);
  for (const setting of ['DynamicUser=yes', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'StateDirectory=portcullis', 'SystemCallFilter=@system-service']) {
    assert.ok(unit.includes(`\n${setting}\n`), setting);
  }
});

test('deploy/Dockerfile: multi-stage, installs the packed tarball like the test, non-root, health check on ping', () => {
  // Docker cannot run on the test machines: the file's structure is checked instead.
  const text = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
  const stages = [...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
  assert.ok(stages.length >= 2, 'multi-stage');
  for (const image of stages) {
    const major = Number(/^node:(\d+)/.exec(image)?.[1]);
    assert.ok(major >= 20, `${image}: Node ${major} does not satisfy engines ${pkg.engines.node}`);
  }
  assert.match(text, /npm pack/);
  assert.match(text, /npm install -g --omit=dev .*portcullis\.tgz/);
  const final = text.slice(text.lastIndexOf('\nFROM '));
  assert.match(final, /^USER (?!root\b|0\b)\S+$/m);
  assert.match(final, /^HEALTHCHECK .*\n?.*\/outpost\.goauthentik\.io\/ping/m);
  assert.doesNotMatch(final, /apt-get install/, 'build tools in the final image');
});

test('a checkout: npm ci --omit=dev builds dist/ without dev tools, and the command runs', { timeout: 300_000 }, async () => {
  const dir = join(work, 'checkout');
  copyCheckout(dir);
  const ci = await run('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], dir);
  assert.equal(ci.code, 0, ci.out);
  assert.ok(!existsSync(join(dir, 'node_modules/tsx')) && !existsSync(join(dir, 'node_modules/@types/node')), 'dev dependencies installed');
  assert.ok(existsSync(join(dir, 'dist/src/cli.js')), 'prepare did not build dist/');
  const version = await run('npx', ['--no-install', 'portcullis', '--version'], dir, process.env);
  assert.deepEqual(version, { code: 0, out: `${pkg.version}\n` });
  const file = config(dir, await freePort());
  const check = await run('npx', ['--no-install', 'portcullis', '--check', '--config', file], dir, process.env);
  assert.deepEqual(check, { code: 0, out: `${file}: OK (1 provider)\n` });
});
