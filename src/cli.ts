#!/usr/bin/env node
// portcullis --config portcullis.yaml      run the outpost
// portcullis --check --config FILE         validate the file and exit (non-zero on errors)
// portcullis --demo                        run with an embedded demo IdP and application
//
// Every failure ends in one line on stderr (a command-line mistake adds the usage text), and the
// exit code says which kind it was (EXIT below, documented in --help and README.md).
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { PortcullisConfig } from './config/index.js';
import { VERSION_STRING } from './version.js';

// The outpost's modules are loaded only once the command line is understood: --help, --version
// and a usage mistake answer without loading the server.
const load = async () => {
  const [config, outpost, service, preflight] = await Promise.all([
    import('./config/index.js'),
    import('./server/outpost.js'),
    import('./server/service.js'),
    import('./server/preflight.js'),
  ]);
  return { ...config, ...outpost, ...service, ...preflight };
};
let modules: Awaited<ReturnType<typeof load>> | undefined;

/** Exit codes. */
const EXIT = {
  ok: 0,
  /** The configuration is invalid, or the start failed (a port, a file, the session store). */
  failed: 1,
  /** A command-line mistake. */
  usage: 2,
} as const;

const USAGE = `Usage:
  portcullis --config FILE          run the outpost (-c FILE)
  portcullis --check --config FILE  validate FILE and the files it names, then exit
  portcullis --demo                 run a self-contained demo (embedded identity provider and application)
  portcullis --help | --version

Exit codes: 0 success; 1 invalid configuration or a failed start (one line names the field or
the resource); 2 a command-line mistake.`;

class UsageError extends Error {}

interface CommandLine {
  config?: string;
  check: boolean;
  demo: boolean;
  version: boolean;
  help: boolean;
}

/** The command line, or a UsageError saying in one line what is wrong with it. */
function parseCommandLine(args: string[]): CommandLine {
  let values: Partial<CommandLine>;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        check: { type: 'boolean', default: false },
        demo: { type: 'boolean', default: false },
        version: { type: 'boolean', short: 'V', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = (err as Error).message;
    const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${quoted}`);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`unexpected argument "${quoted}"`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      if (/--config/.test(message)) throw new UsageError('--config needs a file name: --config FILE');
      throw new UsageError(`${quoted.replace(/^-\w, /, '')} takes no value`);
    }
    throw new UsageError(message.split('. ')[0] ?? message);
  }
  const line = values as CommandLine;
  if (line.help || line.version) return line;
  if (line.demo && line.config !== undefined) throw new UsageError('--demo makes its own configuration: use --demo or --config FILE, not both');
  if (!line.demo && line.config === undefined) throw new UsageError(line.check ? '--check needs --config FILE (or --demo)' : 'missing --config FILE (or --demo)');
  if (line.config === '') throw new UsageError('--config needs a file name: --config FILE');
  return line;
}

/** The one-line (per issue) form of a failure, for stderr. */
function describeFailure(err: unknown): string {
  if (modules && err instanceof modules.ConfigError) {
    return err.issues.length === 1 ? `${err.source}: ${modules.formatIssue(err.issues[0]!)}` : err.message;
  }
  if ((modules && err instanceof modules.StartupError) || (err as Error)?.name === 'DemoUnavailableError') return `portcullis: ${(err as Error).message}`;
  const message = err instanceof Error ? err.message : String(err);
  return `portcullis: cannot start: ${message.split('\n')[0]}`;
}

async function main(): Promise<number> {
  let line: CommandLine;
  try {
    line = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    console.error(`portcullis: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (line.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (line.version) {
    console.log(VERSION_STRING);
    return EXIT.ok;
  }
  modules = await load();
  const { loadConfigFile, parseConfig, Outpost, runService, probeListeners, describeListenError, fieldOfListenError } = modules;
  let closeDemo: (() => Promise<void>) | null = null;
  /** The demo's config text: workers (outpost.workers) parse it themselves. */
  let demoConfigText: string | undefined;
  let config: PortcullisConfig;
  try {
    if (line.demo) {
      // The demo keeps its secrets and sessions in .portcullis/ of the working folder.
      const stateDir = resolve('.portcullis');
      const demoModule = await import('./demo/demo.js');
      if (line.check) {
        // Its configuration only: nothing is started, nothing is created.
        const { portcullisUrl, idpPort, upstreamPort } = demoModule.DEMO_DEFAULTS;
        const yaml = demoModule.demoConfigYaml({ portcullisUrl, issuer: `http://localhost:${idpPort}`, upstreamPort, secrets: demoModule.demoSecrets(stateDir, false), stateDir });
        config = parseConfig(yaml, { source: 'demo config', baseDir: process.cwd() });
      } else {
        const demo = await demoModule.startDemo({ stateDir });
        closeDemo = demo.close;
        demoConfigText = demo.configYaml;
        config = parseConfig(demo.configYaml, { source: 'demo config', baseDir: process.cwd() });
        console.log(demo.banner);
      }
    } else {
      config = loadConfigFile(line.config!);
    }
  } catch (err) {
    console.error(describeFailure(err));
    await closeDemo?.();
    return EXIT.failed;
  }
  if (line.check) {
    // Build the pipeline too (stage modules, their options), without contacting anything.
    try {
      const probe = await Outpost.create(config, { checkOnly: true, logger: (await import('pino')).pino({ level: 'silent' }) });
      await probe.close();
    } catch (err) {
      console.error(describeFailure(err));
      return EXIT.failed;
    } finally {
      await closeDemo?.();
    }
    console.log(`${config.source ?? line.config}: OK (${config.providers.length} provider${config.providers.length === 1 ? '' : 's'})`);
    return EXIT.ok;
  }
  try {
    // Every listener address is tried before the session store opens and before any listener
    // starts serving: a port in use ends the start here, in one line.
    await probeListeners(config);
  } catch (err) {
    console.error(describeFailure(err));
    await closeDemo?.();
    return EXIT.failed;
  }
  try {
    await runService({ config, configPath: line.config, configText: demoConfigText, onStopped: closeDemo ?? undefined });
  } catch (err) {
    // A listen that lost a race for a port after the probe names its field; the exit closes
    // whatever did open.
    const field = fieldOfListenError(config, err);
    console.error(field ? `portcullis: ${field}: cannot listen: ${describeListenError(err)}` : describeFailure(err));
    await closeDemo?.();
    return EXIT.failed;
  }
  return -1; // keep running
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    console.error(describeFailure(err));
    process.exit(EXIT.failed);
  },
);
