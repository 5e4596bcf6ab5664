// `portcullis --check --config FILE`: validate and exit, as a real child process.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = mkdtempSync(join(tmpdir(), 'portcullis-check-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function check(file: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', '--check', '--config', file],
      { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const provider = (extra = '') => `providers:
  - name: demo
    issuer: https://idp.example.com/application/o/demo/
    client_id: demo
    client_secret: \${DEMO_CLIENT_SECRET}
    cookie_secret: 0123456789abcdef0123456789abcdef
    external_host: https://app.example.com
    internal_host: http://127.0.0.1:8080
${extra}`;

test('a valid file: exit 0 and OK', async () => {
  const file = write(
    'valid.yaml',
    provider(`    skip_path_regex: |
      ^/public/
    mappings:
      - name: team header
        expression: '{"ak_proxy": {"user_attributes": {"additionalHeaders": {"X-Team": "platform"}}}}'
`),
  );
  const run = await check(file, { DEMO_CLIENT_SECRET: 'from-env' });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.trim(), `${file}: OK (1 provider)`);
  assert.equal(run.stderr, '');
});

test('an invalid file: non-zero exit, the error names field and line', async () => {
  const file = write('invalid.yaml', provider('    colour: red\n'));
  const run = await check(file, { DEMO_CLIENT_SECRET: 'x' });
  assert.equal(run.code, 1);
  assert.equal(run.stdout, '');
  // One issue: one line, the file, the line, the field, what is wrong.
  assert.match(run.stderr, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: line 9:\\d+: providers\\[0\\]\\.colour: unknown field "colour" \\[config\\.unknown_field\\]\n$`));
});

test('a missing environment variable fails the check', async () => {
  const file = write('env.yaml', provider());
  const run = await check(file);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /line 5:\d+: providers\[0\]\.client_secret: environment variable DEMO_CLIENT_SECRET is not set \[config\.missing_env\]/);
});

test('a broken CEL mapping: the error names provider, mapping, position and line', async () => {
  const file = write(
    'cel.yaml',
    provider(`    mappings:
      - name: fine
        expression: '{"a": 1}'
      - name: per-user backend
        expression: '{"ak_proxy": ++ }'
`),
  );
  const run = await check(file, { DEMO_CLIENT_SECRET: 'x' });
  assert.equal(run.code, 1);
  assert.match(
    run.stderr,
    /line 13:\d+: providers\[0\]\.mappings\[1\]\.expression: provider demo, mapping 'per-user backend', line 1 column \d+: .+\[config\.invalid_expression\]/,
  );
});

test('a missing file: non-zero exit naming the file', async () => {
  const run = await check(join(dir, 'absent.yaml'));
  assert.equal(run.code, 1);
  assert.match(run.stderr, /^.+absent\.yaml: cannot read .+absent\.yaml: no such file \[config\.unreadable\]\n$/);
});

test('the pipeline is built too: an unknown stage or bad stage options fail the check', async () => {
  const unknown = write('stage.yaml', provider(`pipeline:
  - stage: auth
  - stage: no-such-stage
  - stage: allowlist
  - stage: headers
  - stage: upstream
`));
  const run = await check(unknown, { DEMO_CLIENT_SECRET: 'x' });
  assert.equal(run.code, 1);
  // The error names the entry's line in the file, as schema errors do.
  const line = readFileSync(unknown, 'utf8').split('\n').findIndex((l) => l.includes('no-such-stage')) + 1;
  assert.match(run.stderr, new RegExp(`^.+stage\\.yaml: line ${line}:\\d+: pipeline\\[1\\]\\.stage: `));
  assert.match(run.stderr, /pipeline\[1\]\.stage: stage "no-such-stage" is neither a built-in stage \(auth, allowlist, access_rules, headers\)/);
  const badOptions = write('options.yaml', provider(`pipeline:
  - stage: auth
  - stage: ${join(root, 'examples/client-ip-allowlist/index.ts')}
    options: { allow: 5 }
  - stage: allowlist
  - stage: headers
  - stage: upstream
`));
  const run2 = await check(badOptions, { DEMO_CLIENT_SECRET: 'x' });
  assert.equal(run2.code, 1);
  assert.match(run2.stderr, /pipeline\[1\]\.options/);
});

test('built-in stages take no options: a stray one fails the check', async () => {
  const file = write('builtin-options.yaml', provider(`pipeline:
  - stage: auth
  - stage: allowlist
    options: { patterns: ['^/'] }
  - stage: headers
  - stage: upstream
`));
  const run = await check(file, { DEMO_CLIENT_SECRET: 'x' });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /pipeline\[1\]\.options: allowlist: must NOT have additional properties \("patterns"\)/);
});
