// Start-up failures as a user meets them, through the real command: each is one line naming the
// config field or the resource, exit 1, before any listener opens; `--check` finds every one it can
// without contacting anything.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, startCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { selfSignedCert, startClosedPort } from '../support/upstream.js';
import { httpGet } from '../support/browserless.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-startup-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** A config file; `outpost` lines go under `outpost:`. */
function config(outpost: string[], opts: { issuer?: string } = {}): string {
  const file = join(dir, `config-${++n}.yaml`);
  writeFileSync(
    file,
    [
      'outpost:',
      ...outpost.map((l) => `  ${l}`),
      'providers:',
      '  - name: app',
      `    issuer: ${opts.issuer ?? 'https://idp.example.com/'}`,
      '    client_id: app',
      '    client_secret: secret',
      '    cookie_secret: 0123456789abcdef0123456789abcdef',
      '    external_host: https://app.example.com',
      '    internal_host: http://127.0.0.1:8080',
      '',
    ].join('\n'),
  );
  return file;
}

const store = (name: string) => `session_store: { type: embedded, path: ${JSON.stringify(join(dir, name, 'sessions.jsonl'))} }`;

/** One line on stderr, nothing on stdout, exit 1. */
function oneLine(run: { code: number; stdout: string; stderr: string }, pattern: RegExp): void {
  assert.equal(run.code, 1, run.stderr);
  assert.equal(run.stdout, '');
  const lines = run.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(run.stderr, /\n\s+at |Error:/);
}

test('--check: certificate and key files must exist, parse and belong together; nothing is created', async () => {
  const pair = await selfSignedCert(['app.example.com']);
  const other = await selfSignedCert(['other.example.com']);
  writeFileSync(join(dir, 'app.crt'), pair.cert);
  writeFileSync(join(dir, 'app.key'), pair.key);
  writeFileSync(join(dir, 'other.key'), other.key);
  const listeners = `listeners: { http: "127.0.0.1:${await freePort()}", https: "127.0.0.1:${await freePort()}" }`;
  const tls = (cert: string, key: string) => `tls: { certificates: [ { cert: ${cert}, key: ${key} } ] }`;

  const missing = await runCli(['--check', '--config', config([listeners, store('s1'), tls('app.crt', 'absent.key')])]);
  oneLine(missing, /^.+\.yaml: line 4:\d+: outpost\.tls\.certificates\[0\]\.key: cannot read .+absent\.key: no such file \[config\.unreadable_file\]$/);
  assert.ok(!existsSync(join(dir, 's1')), '--check created the store folder');

  const notPem = await runCli(['--check', '--config', config([listeners, store('s2'), tls('app.key', 'app.key')])]);
  oneLine(notPem, /outpost\.tls\.certificates\[0\]\.cert: .+app\.key is not a PEM certificate \[config\.invalid_certificate\]$/);

  const mismatch = await runCli(['--check', '--config', config([listeners, store('s3'), tls('app.crt', 'other.key')])]);
  oneLine(mismatch, /outpost\.tls\.certificates\[0\]\.key: .+other\.key is not the private key of .+app\.crt \[config\.invalid_key\]$/);

  const good = await runCli(['--check', '--config', config([listeners, store('s4'), tls('app.crt', 'app.key')])]);
  assert.equal(good.code, 0, good.stderr);
  assert.match(good.stdout, /: OK \(1 provider\)\n$/);
  assert.ok(!existsSync(join(dir, 's4')));
});

test('--check: ports must be in range and not shared; the store path must be writable', async () => {
  const port = await freePort();
  oneLine(
    await runCli(['--check', '--config', config([`listeners: { http: "127.0.0.1:${port}", https: "127.0.0.1:99999" }`, store('p1')])]),
    /line 2:\d+: outpost\.listeners\.https: port 99999 is out of range \(0-65535\) \[config\.invalid_port\]$/,
  );
  oneLine(
    await runCli(['--check', '--config', config([`listeners: { http: "0.0.0.0:${port}", https: "127.0.0.1:${port}" }`, store('p2')])]),
    new RegExp(`outpost\\.listeners\\.https: port ${port} is already used by outpost\\.listeners\\.http \\[config\\.duplicate_port\\]$`),
  );
  writeFileSync(join(dir, 'a-file'), '');
  oneLine(
    await runCli(['--check', '--config', config([`listeners: { http: "127.0.0.1:${port}", https: null }`, `session_store: { type: embedded, path: ${JSON.stringify(join(dir, 'a-file', 'sessions.jsonl'))} }`])]),
    /outpost\.session_store\.path: cannot (write|create) .+a-file.+ \[config\.unwritable_path\]$/,
  );
});

test('a port in use: one line naming the listener field, before any listener or the store opens', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  after(() => busy.close());
  const busyPort = (busy.address() as net.AddressInfo).port;
  const httpPort = await freePort();
  const run = await runCli(['--config', config([`listeners: { http: "127.0.0.1:${httpPort}", https: "127.0.0.1:${busyPort}" }`, store('busy')])]);
  oneLine(run, new RegExp(`^portcullis: outpost\\.listeners\\.https: cannot listen on 127\\.0\\.0\\.1:${busyPort}: the address is already in use`));
  // The store was not opened (its journal would exist), nothing reported listening.
  assert.ok(!existsSync(join(dir, 'busy', 'sessions.jsonl')));
});

test('a missing certificate ends the start with one line, and no listener opens', async () => {
  const run = await runCli(['--config', config([`listeners: { http: "127.0.0.1:${await freePort()}", https: "127.0.0.1:${await freePort()}" }`, store('cert'), 'tls: { certificates: [ { cert: /nonexistent/app.crt, key: /nonexistent/app.key } ] }'])]);
  assert.equal(run.code, 1);
  assert.equal(run.stdout, '');
  // Two issues (cert and key): a header line and one line for each.
  assert.match(run.stderr, /^.+: 2 configuration errors\n {2}line 4:\d+: outpost\.tls\.certificates\[0\]\.cert: cannot read \/nonexistent\/app\.crt: no such file \[config\.unreadable_file\]\n {2}line 4:\d+: outpost\.tls\.certificates\[0\]\.key: .+\n$/);
});

test('an unreachable identity provider does not stop the start: one line names it, and the outpost serves', async () => {
  const idpPort = await startClosedPort();
  const httpPort = await freePort();
  const httpsPort = await freePort();
  mkdirSync(join(dir, 'idp'), { recursive: true });
  const running = await startCli(['--config', config([`listeners: { http: "127.0.0.1:${httpPort}", https: "127.0.0.1:${httpsPort}" }`, store('idp')], { issuer: `http://127.0.0.1:${idpPort}/` })], /Portcullis is listening/);
  try {
    // The start-up line names each listener by its URL, the HTTPS one as https.
    const listening = JSON.parse(running.output().split('\n').find((l) => l.includes('Portcullis is listening'))!) as Record<string, unknown>;
    assert.equal(listening.http, `http://127.0.0.1:${httpPort}`);
    assert.equal(listening.https, `https://127.0.0.1:${httpsPort}`);
    const ping = await httpGet(`http://127.0.0.1:${httpPort}/outpost.goauthentik.io/ping`);
    assert.equal(ping.status, 204);
    const start = Date.now();
    while (!/discovery failed/.test(running.output()) && Date.now() - start < 10_000) await new Promise((r) => setTimeout(r, 100));
    const line = running.output().split('\n').find((l) => l.includes('discovery failed'));
    assert.ok(line, running.output());
    assert.ok(line.includes(`http://127.0.0.1:${idpPort}/`), line);
  } finally {
    assert.equal(await running.stop(), 0);
  }
});
