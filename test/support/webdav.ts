// A real WebDAV server for tests: Debian's Apache httpd with mod_dav and mod_dav_fs, on a
// loopback port, serving a temporary folder. It runs in the foreground as a child of the test
// process and is stopped by its pid; the folder is removed on stop.
// (mod_unixd and mod_log_config are built into Debian's apache2: they are not loaded here.)
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export const APACHE_BIN = process.env.PORTCULLIS_APACHE ?? '/usr/sbin/apache2';
const MODULES = '/usr/lib/apache2/modules';

export interface RunningWebDav {
  port: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The folder served at `/dav/`. */
  root: string;
  /** Apache's error log so far (for failure messages). */
  logs(): string;
  /** SIGTERM (SIGKILL after 3 s), wait for the exit, remove the folder. Idempotent. */
  stop(): Promise<void>;
}

/** Starts Apache serving a fresh folder at `/dav/` with WebDAV on, and waits until it accepts connections. */
export async function startWebDav(): Promise<RunningWebDav> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-webdav-'));
  const root = join(dir, 'files');
  mkdirSync(root);
  // The workers run as www-data: they write the files and the lock database.
  chmodSync(dir, 0o777);
  chmodSync(root, 0o777);
  const mod = (name: string, file: string) => `LoadModule ${name} ${MODULES}/${file}`;
  const conf = join(dir, 'httpd.conf');
  writeFileSync(
    conf,
    `ServerRoot ${dir}
DefaultRuntimeDir ${dir}
PidFile ${join(dir, 'httpd.pid')}
Mutex file:${dir} default
${mod('mpm_event_module', 'mod_mpm_event.so')}
${mod('authz_core_module', 'mod_authz_core.so')}
${mod('alias_module', 'mod_alias.so')}
${mod('dav_module', 'mod_dav.so')}
${mod('dav_fs_module', 'mod_dav_fs.so')}
User www-data
Group www-data
Listen 127.0.0.1:${port}
ServerName webdav.localtest
ErrorLog ${join(dir, 'error.log')}
LogLevel warn
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
DavLockDB ${join(dir, 'davlock')}
Alias /dav ${root}
<Directory ${root}>
  Dav On
  Require all granted
</Directory>
`,
  );
  const child = spawn(APACHE_BIN, ['-d', dir, '-f', conf, '-DFOREGROUND'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => ((exited = true), resolve()));
    child.once('error', (err) => ((output += String(err)), (exited = true), resolve()));
  });
  const logs = () => {
    let log = '';
    try {
      log = readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      // not written yet
    }
    return output + log;
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited && child.pid !== undefined) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (exited || Date.now() > deadline) {
      const why = logs();
      await stop();
      throw new Error(`apache2 (${APACHE_BIN}) did not start on 127.0.0.1:${port}:\n${why}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { port, url: `http://127.0.0.1:${port}`, root, logs, stop };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}
