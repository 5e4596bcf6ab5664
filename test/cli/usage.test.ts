// Command-line mistakes end in one line saying what is wrong, then the usage text, exit 2;
// --help and --version answer on stdout, exit 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, runCli } from '../support/cli.js';

const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

test('--help prints the usage with the exit codes; --version the version', async () => {
  for (const flag of ['--help', '-h']) {
    const run = await runCli([flag]);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^Usage:\n {2}portcullis --config FILE/);
    assert.match(run.stdout, /Exit codes: 0 success; 1 invalid configuration or a failed start .*; 2 a command-line mistake/s);
    assert.equal(run.stderr, '');
  }
  const run = await runCli(['--version']);
  assert.deepEqual([run.code, run.stdout, run.stderr], [0, `${version}\n`, '']);
});

test('every command-line mistake: one line naming it, the usage, exit 2, no stack trace', async () => {
  const cases: [string[], string][] = [
    [['--chek', '--config', 'x.yaml'], 'unknown option --chek'],
    [['--config'], '--config needs a file name: --config FILE'],
    [['-c'], '--config needs a file name: --config FILE'],
    [['--config', 'a.yaml', 'stray'], 'unexpected argument "stray"'],
    [['--check'], '--check needs --config FILE (or --demo)'],
    [[], 'missing --config FILE (or --demo)'],
    [['--check=yes', '--config', 'a.yaml'], '--check takes no value'],
    [['--demo', '--config', 'a.yaml'], '--demo makes its own configuration: use --demo or --config FILE, not both'],
    [['--config='], '--config needs a file name: --config FILE'],
  ];
  for (const [args, message] of cases) {
    const run = await runCli(args);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.equal(run.stdout, '');
    const [first, blank, usage] = run.stderr.split('\n');
    assert.equal(first, `portcullis: ${message}`, args.join(' '));
    assert.equal(blank, '');
    assert.equal(usage, 'Usage:');
    assert.doesNotMatch(run.stderr, /ERR_PARSE_ARGS|\n\s+at /);
  }
});
