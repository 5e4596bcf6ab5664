// A real second OpenID Provider for the interoperability tests: LemonLDAP::NG 2.16 from Debian's
// packages (`lemonldap-ng`, `lemonldap-ng-fastcgi-server`), with its Demo users dwho, rtyler and
// msmith (password = user name). Everything runs from a temporary directory: the configuration
// (File backend: lmConf-1.json, plus a lemonldap-ng.ini pointing at it), the session stores, the
// FastCGI server (which refuses to run as root, so it drops to www-data) and an nginx in front of
// it on a free loopback port. No system service is used or touched; both children are stopped by
// their pid.
//
// The portal lives at http://127.0.0.1:<port>/ (Node resolves no other loopback name but
// `localhost`, and Portcullis must reach the issuer by name), so LemonLDAP's cookie `domain` is
// `127.0.0.1`.
import { spawn, execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { startNginxServers, type RunningProxy } from './reverse-proxies.js';

export const LLNG_FASTCGI_BIN = '/usr/sbin/llng-fastcgi-server';
export const LLNG_PORTAL_ROOT = '/usr/share/lemonldap-ng/portal/htdocs';

/** The Demo backend's accounts (password = user name) and their groups. */
export const LLNG_USERS = {
  dwho: { uid: 'dwho', cn: 'Doctor Who', mail: 'dwho@badwolf.org', groups: ['timelords', 'users'] },
  rtyler: { uid: 'rtyler', cn: 'Rose Tyler', mail: 'rtyler@badwolf.org', groups: ['earthlings', 'users'] },
  msmith: { uid: 'msmith', cn: 'Mickey Smith', mail: 'msmith@badwolf.org', groups: ['earthlings', 'users'] },
} as const;

export interface LlngRelyingParty {
  /** The configuration key of the RP in lmConf (letters and digits). */
  key: string;
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  postLogoutRedirectUris?: string[];
  /** OpenID Connect Front-Channel Logout: the RP's frontchannel_logout_uri (with iss and sid). */
  frontchannelLogoutUri?: string;
  /** Claim name → session attribute or macro name, optionally `;type;array` (LemonLDAP's syntax). */
  claims?: Record<string, string>;
  /** Macros of this RP: name → Perl expression over the session ($uid, $groups, …). */
  macros?: Record<string, string>;
  /** Put the claims into the ID token too (default: only at userinfo, LemonLDAP's default). */
  idTokenForceClaims?: boolean;
  /** Allow the resource owner password grant (to get an access token without a browser). */
  allowPasswordGrant?: boolean;
}

export interface RunningLemonldap {
  /** http://127.0.0.1:<port> (what discovery says the issuer is). */
  issuer: string;
  port: number;
  /** The portal's nginx (for its logs). */
  nginx: RunningProxy;
  /** What the FastCGI server wrote (its log, at LemonLDAP's `notice` level). */
  logs(): string;
  close(): Promise<void>;
}

export interface StartLemonldapOptions {
  relyingParties: LlngRelyingParty[];
  /** Extra `server { … }` blocks for the same nginx (e.g. a forward_single site). */
  extraServers?: string;
  /** Ports of the extra servers that must answer before the start counts as done. */
  extraPorts?: number[];
}

export async function startLemonldap(opts: StartLemonldapOptions): Promise<RunningLemonldap> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-llng-'));
  chmodSync(dir, 0o755);
  for (const d of ['conf', 'sessions/lock', 'psessions/lock', 'cache', 'run']) mkdirSync(join(dir, d), { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

  const rpOptions: Record<string, unknown> = {};
  const rpClaims: Record<string, unknown> = {};
  const rpMacros: Record<string, unknown> = {};
  for (const rp of opts.relyingParties) {
    rpOptions[rp.key] = {
      oidcRPMetaDataOptionsDisplayName: rp.key,
      oidcRPMetaDataOptionsClientID: rp.clientId,
      oidcRPMetaDataOptionsClientSecret: rp.clientSecret,
      oidcRPMetaDataOptionsRedirectUris: rp.redirectUris.join(' '),
      oidcRPMetaDataOptionsPostLogoutRedirectUris: (rp.postLogoutRedirectUris ?? []).join(' '),
      oidcRPMetaDataOptionsIDTokenSignAlg: 'RS256',
      oidcRPMetaDataOptionsIDTokenExpiration: 3600,
      oidcRPMetaDataOptionsAccessTokenExpiration: 3600,
      oidcRPMetaDataOptionsIDTokenForceClaims: rp.idTokenForceClaims ? 1 : 0,
      oidcRPMetaDataOptionsBypassConsent: 1,
      oidcRPMetaDataOptionsLogoutBypassConfirm: 1,
      oidcRPMetaDataOptionsRequirePKCE: 1,
      oidcRPMetaDataOptionsAllowPasswordGrant: rp.allowPasswordGrant ? 1 : 0,
      oidcRPMetaDataOptionsUserIDAttr: 'uid',
      ...(rp.frontchannelLogoutUri
        ? { oidcRPMetaDataOptionsLogoutUrl: rp.frontchannelLogoutUri, oidcRPMetaDataOptionsLogoutType: 'front', oidcRPMetaDataOptionsLogoutSessionRequired: 1 }
        : {}),
    };
    rpClaims[rp.key] = rp.claims ?? { preferred_username: 'uid', name: 'cn', email: 'mail' };
    rpMacros[rp.key] = rp.macros ?? {};
  }

  const conf = {
    cfgNum: 1,
    cfgVersion: '2.16.1',
    cfgAuthor: 'portcullis tests',
    cfgDate: String(Math.floor(Date.now() / 1000)),
    authentication: 'Demo',
    userDB: 'Same',
    passwordDB: 'Demo',
    registerDB: 'Demo',
    demoExportedVars: { cn: 'cn', mail: 'mail', uid: 'uid' },
    // LemonLDAP refuses to work without a cookie domain; the portal is on 127.0.0.1.
    domain: '127.0.0.1',
    portal: `${issuer}/`,
    cookieName: 'lemonldap',
    securedCookie: 0,
    whatToTrace: 'uid',
    notification: 0,
    loginHistoryEnabled: 0,
    checkTime: 1,
    globalStorage: 'Apache::Session::File',
    globalStorageOptions: {
      Directory: join(dir, 'sessions'),
      LockDirectory: join(dir, 'sessions/lock'),
      generateModule: 'Lemonldap::NG::Common::Apache::Session::Generate::SHA256',
    },
    localSessionStorage: 'Cache::FileCache',
    localSessionStorageOptions: { cache_root: join(dir, 'cache'), cache_depth: 3, default_expires_in: 600, directory_umask: '007', namespace: 'lemonldap-ng-sessions' },
    persistentStorage: 'Apache::Session::File',
    persistentStorageOptions: { Directory: join(dir, 'psessions'), LockDirectory: join(dir, 'psessions/lock') },
    locationRules: { '127.0.0.1': { default: 'accept' } },
    exportedHeaders: {},
    macros: {},
    groups: {},
    issuerDBOpenIDConnectActivation: 1,
    oidcServiceMetaDataIssuer: issuer,
    oidcServicePrivateKeySig: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    oidcServicePublicKeySig: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    oidcServiceKeyIdSig: 'portcullis-test',
    oidcServiceAllowAuthorizationCodeFlow: 1,
    oidcServiceIgnoreScopeForClaims: 1,
    oidcRPMetaDataOptions: rpOptions,
    oidcRPMetaDataExportedVars: rpClaims,
    oidcRPMetaDataMacros: rpMacros,
  };
  writeFileSync(join(dir, 'conf', 'lmConf-1.json'), JSON.stringify(conf, null, 2));
  const ini = join(dir, 'lemonldap-ng.ini');
  writeFileSync(
    ini,
    [
      '[all]',
      'logLevel = notice',
      'checkTime = 1',
      '[configuration]',
      'type = File',
      `dirName = ${join(dir, 'conf')}`,
      'localStorage = Cache::FileCache',
      `localStorageOptions = { 'namespace' => 'lemonldap-ng-config', 'default_expires_in' => 600, 'cache_root' => '${join(dir, 'cache')}', 'cache_depth' => 3 }`,
      '[portal]',
      'staticPrefix = /static',
      'templateDir = /usr/share/lemonldap-ng/portal/templates',
      'languages = en',
      '[handler]',
      'status = 0',
      '',
    ].join('\n'),
  );
  // The FastCGI server runs as www-data: it owns the stores (and the socket's directory).
  execFileSync('chown', ['-R', 'www-data:www-data', dir]);

  const socket = join(dir, 'run', 'llng.sock');
  const child = spawn(
    LLNG_FASTCGI_BIN,
    ['--foreground', '--user', 'www-data', '--group', 'www-data', '--socket', socket, '--pid', join(dir, 'run', 'llng.pid'), '--proc', '2'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        LLNG_DEFAULTCONFFILE: ini,
        LLNG_DEFAULTLOGGER: 'Lemonldap::NG::Common::Logger::Std',
      },
    },
  );
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  // Not installed (bash .ci/run installs lemonldap-ng-fastcgi-server): say so instead of crashing.
  child.once('error', (err) => {
    output += `cannot run ${LLNG_FASTCGI_BIN}: ${err.message}\n`;
    exited = true;
  });
  const stopFastcgi = async () => {
    if (!exited && child.pid !== undefined) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exit;
      clearTimeout(timer);
    }
  };

  const deadline = Date.now() + 20_000;
  while (!existsSync(socket) || !(await canConnectUnix(socket))) {
    if (exited || Date.now() > deadline) {
      await stopFastcgi();
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`llng-fastcgi-server did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  const portal = `server {
    listen 127.0.0.1:${port};
    server_name 127.0.0.1;
    root ${LLNG_PORTAL_ROOT}/;
    if ($uri !~ ^/((static|javascript|favicon).*|.*\\.psgi)) {
      rewrite ^/(.*)$ /index.psgi/$1 break;
    }
    location ~ ^(?<sc>/.*\\.psgi)(?:$|/) {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:${socket};
      fastcgi_param HTTP_HOST $host:$server_port;
      fastcgi_param LLTYPE psgi;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_split_path_info ^(.*\\.psgi)(/.*)$;
      fastcgi_param PATH_INFO $fastcgi_path_info;
    }
    location /static/ { alias ${LLNG_PORTAL_ROOT}/static/; }
    location /javascript/ { alias /usr/share/javascript/; }
}
${opts.extraServers ?? ''}`;
  let nginx: RunningProxy;
  try {
    nginx = await startNginxServers(portal, port);
    for (const p of opts.extraPorts ?? []) await waitForPort(p);
  } catch (err) {
    await stopFastcgi();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    issuer,
    port,
    nginx,
    logs: () => output + safeRead(join(dir, 'run', 'llng.log')),
    close: async () => {
      await nginx.stop();
      await stopFastcgi();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnectUnix(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing answers on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
