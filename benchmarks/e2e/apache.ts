// Scenario 12: Apache httpd with mod_auth_openidc, a real OpenID Connect relying party in proxy
// mode (Debian's apache2 and libapache2-mod-auth-openidc), logged in through the test IdP's real
// flow like Portcullis. The event MPM with one child process of 64 threads; its session cache
// is the module's default (shared memory), claims passed to the upstream as OIDC_CLAIM_*
// headers. Compared per request by CPU time, so its several threads do not flatter it.
import { existsSync, mkdtempSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startProgram, type Child } from '../lib/proc.js';

const BIN = '/usr/sbin/apache2';
const MODULES = '/usr/lib/apache2/modules';

export function apacheAvailable(): boolean {
  return existsSync(BIN) && existsSync(join(MODULES, 'mod_auth_openidc.so'));
}

export interface ApacheSpec {
  port: number;
  upstreamPort: number;
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** The host name the browser uses (`apache.localtest`). */
  host: string;
}

export const APACHE_REDIRECT_PATH = '/redirect_uri';

export async function startApache(spec: ApacheSpec): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-apache-'));
  // The workers run as www-data and must reach the folder (mutexes, shared memory files).
  chmodSync(dir, 0o777);
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
${mod('authn_core_module', 'mod_authn_core.so')}
${mod('authz_user_module', 'mod_authz_user.so')}
${mod('auth_openidc_module', 'mod_auth_openidc.so')}
${mod('proxy_module', 'mod_proxy.so')}
${mod('proxy_http_module', 'mod_proxy_http.so')}
User www-data
Group www-data
Listen 127.0.0.1:${spec.port}
ServerName ${spec.host}
ErrorLog ${join(dir, 'error.log')}
LogLevel warn
StartServers 1
ServerLimit 1
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0

OIDCProviderMetadataURL ${spec.issuer}/.well-known/openid-configuration
OIDCClientID ${spec.clientId}
OIDCClientSecret ${spec.clientSecret}
OIDCRedirectURI http://${spec.host}:${spec.port}${APACHE_REDIRECT_PATH}
OIDCCryptoPassphrase ${randomBytes(24).toString('hex')}
OIDCScope "openid profile email"
OIDCPKCEMethod S256
OIDCRemoteUserClaim preferred_username
OIDCPassClaimsAs headers
OIDCSessionInactivityTimeout 3600

<Location />
  AuthType openid-connect
  Require valid-user
</Location>
ProxyPass ${APACHE_REDIRECT_PATH} !
ProxyPass / http://127.0.0.1:${spec.upstreamPort}/ keepalive=On
ProxyPreserveHost On
`,
  );
  const child = await startProgram('apache', BIN, ['-d', dir, '-f', conf, '-DFOREGROUND'], spec.port, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stopSignal: 'SIGTERM' });
  return {
    ...child,
    stop: async () => {
      await child.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
