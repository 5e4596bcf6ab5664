#!/usr/bin/env node
// portcullis --config portcullis.yaml      run the outpost
// portcullis --check --config FILE         validate the file and exit (non-zero on errors)
// portcullis --demo                        run with an embedded demo IdP and application
import { parseArgs } from 'node:util';
import { loadConfigFile, parseConfig, ConfigError, type PortcullisConfig } from './config/index.js';
import { Outpost } from './server/outpost.js';
import { VERSION_STRING } from './version.js';
import { runService } from './server/service.js';

const USAGE = `Usage:
  portcullis --config FILE        run the outpost
  portcullis --check --config FILE  validate FILE and exit
  portcullis --demo               run a self-contained demo (embedded identity provider and application)
  portcullis --version`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      check: { type: 'boolean', default: false },
      demo: { type: 'boolean', default: false },
      version: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.version) {
    console.log(VERSION_STRING);
    return 0;
  }
  let closeDemo: (() => Promise<void>) | null = null;
  let demoConfigText: string | undefined;
  let config: PortcullisConfig;
  try {
    if (values.demo) {
      const { startDemo } = await import('./demo/demo.js');
      const demo = await startDemo();
      closeDemo = demo.close;
      demoConfigText = demo.configYaml;
      config = parseConfig(demo.configYaml, { source: 'demo config', baseDir: process.cwd() });
      console.log(demo.banner);
    } else if (values.config) {
      config = loadConfigFile(values.config);
    } else {
      console.error(USAGE);
      return 2;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 1;
    }
    throw err;
  }
  if (values.check) {
    // Build the pipeline too (stage modules, their options), without contacting anything.
    try {
      const probe = await Outpost.create(config, { checkOnly: true, logger: (await import('pino')).pino({ level: 'silent' }) });
      await probe.close();
    } catch (err) {
      if (err instanceof ConfigError) {
        console.error(err.message);
        return 1;
      }
      throw err;
    }
    console.log(`${values.config}: OK (${config.providers.length} provider${config.providers.length === 1 ? '' : 's'})`);
    return 0;
  }
  try {
    await runService({ config, configPath: values.config, configText: demoConfigText, onStopped: closeDemo ?? undefined });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 1;
    }
    throw err;
  }
  return -1; // keep running
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
