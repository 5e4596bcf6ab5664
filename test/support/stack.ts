// A whole test deployment on loopback: a real OpenID Provider (oidc-provider), a real upstream,
// and Portcullis itself built from a YAML config through the real loader.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/index.js';
import { Outpost, type OutpostOptions } from '../../src/server/outpost.js';
import { startIdentityProvider, DEMO_USERS, type IdpUser, type RunningIdp, type StartIdpOptions } from '../../src/demo/identity-provider.js';
import { startUpstream, type RunningUpstream } from './upstream.js';
import { freePort } from './ports.js';
export { freePort } from './ports.js';


export interface ProviderSpec {
  name: string;
  /** Host name of external_host (resolved to 127.0.0.1 by the test HTTP client). */
  host: string;
  mode?: 'proxy' | 'forward_single' | 'forward_domain';
  /** Any other provider fields (skip_path_regex, cookie_domain, mappings, …). */
  extra?: Record<string, unknown>;
  /** Defaults to the stack's upstream in proxy mode. */
  internal_host?: string;
  /** Overrides external_host (e.g. a sub-path or another port). */
  external_host?: string;
  /**
   * What the IdP knows of this client: refresh tokens; a back-channel logout URI (on 127.0.0.1,
   * which is no provider's external_host, as a provider's server would reach an outpost); a
   * front-channel logout URI (on external_host).
   */
  client?: { refresh_tokens?: boolean; backchannel_logout?: boolean; frontchannel_logout?: boolean };
}

export interface StackOptions {
  providers: ProviderSpec[];
  users?: IdpUser[];
  outpost?: Record<string, unknown>;
  /** Reuse a session database file (restart tests). */
  journal?: string;
  /** Skip HTTPS (most tests). */
  https?: boolean;
  outpostOptions?: OutpostOptions;
  /** Extra top-level config (e.g. `pipeline`). */
  extraConfig?: Record<string, unknown>;
  /** Port for Portcullis's HTTP listener (default: a free one). */
  port?: number;
  /** Port for the HTTPS listener when `https` (default: a free one). */
  httpsPort?: number;
  /** Serve the users' claims only at userinfo (the test IdP's `claimsAtUserinfoOnly`). */
  claimsAtUserinfoOnly?: boolean;
  /** More options of the test IdP (e.g. jwtAccessTokens). */
  idp?: Partial<Omit<StartIdpOptions, 'clients' | 'users'>>;
}

export interface Stack {
  idp: RunningIdp;
  upstream: RunningUpstream;
  outpost: Outpost;
  port: number;
  httpsPort: number | null;
  journal: string;
  configYaml: string;
  /** `http://<provider host>:<port><path>` */
  url(host: string, path?: string): string;
  /** Stop Portcullis only (IdP and upstream keep running). */
  stopOutpost(): Promise<void>;
  /** Start Portcullis again with the same config and session database. */
  restartOutpost(): Promise<void>;
  close(): Promise<void>;
}

export const quietLogger = () => pino({ level: process.env.PORTCULLIS_TEST_LOG ?? 'silent' });

/**
 * A port from freePort() was free a moment ago; an outgoing connection's ephemeral local port
 * (same range) can take it before the outpost, the IdP or the upstream listens. The stack then
 * starts again on new ports (only when the caller did not fix them), after closing what it opened.
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOnce(opts);
    } catch (err) {
      const fixed = opts.port !== undefined || opts.httpsPort !== undefined;
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || fixed || attempt >= 3) throw err;
    }
  }
}

async function startStackOnce(opts: StackOptions): Promise<Stack> {
  const port = opts.port ?? (await freePort());
  const httpsPort = opts.https ? (opts.httpsPort ?? (await freePort())) : null;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-test-'));
  const journal = opts.journal ?? join(dir, 'sessions.db');
  const upstream = await startUpstream({ name: 'upstream' });
  let idp: Awaited<ReturnType<typeof startIdentityProvider>> | undefined;
  try {
    return await startAround(upstream);
  } catch (err) {
    await upstream.close().catch(() => undefined);
    await idp?.close().catch(() => undefined);
    throw err;
  }

  async function startAround(upstream: Awaited<ReturnType<typeof startUpstream>>): Promise<Stack> {
  const secrets = new Map(opts.providers.map((p) => [p.name, randomBytes(18).toString('base64url')]));
  const externalOf = (p: ProviderSpec) => p.external_host ?? `http://${p.host}:${port}`;
  const idpServer = await startIdentityProvider({
    clients: opts.providers.map((p) => ({
      client_id: `client-${p.name}`,
      client_secret: secrets.get(p.name)!,
      redirect_uris: [`${externalOf(p).replace(/\/$/, '')}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`],
      post_logout_redirect_uris: [`${externalOf(p).replace(/\/$/, '')}/`, `${externalOf(p).replace(/\/$/, '')}/outpost.goauthentik.io/signed_out`],
      ...(p.client?.refresh_tokens ? { refresh_tokens: true } : {}),
      ...(p.client?.backchannel_logout ? { backchannel_logout_uri: `http://127.0.0.1:${port}/outpost.goauthentik.io/backchannel_logout` } : {}),
      ...(p.client?.frontchannel_logout ? { frontchannel_logout_uri: `${externalOf(p).replace(/\/$/, '')}/outpost.goauthentik.io/frontchannel_logout` } : {}),
    })),
    users: opts.users ?? DEMO_USERS,
    claimsAtUserinfoOnly: opts.claimsAtUserinfoOnly,
    ...opts.idp,
  });
  idp = idpServer;
  const config = {
    outpost: {
      name: 'test outpost',
      listeners: { http: `127.0.0.1:${port}`, https: httpsPort ? `127.0.0.1:${httpsPort}` : null },
      session_store: { type: 'embedded', path: journal },
      log_level: 'silent',
      ...opts.outpost,
    },
    providers: opts.providers.map((p) => ({
      name: p.name,
      issuer: idpServer.issuer,
      client_id: `client-${p.name}`,
      client_secret: secrets.get(p.name)!,
      cookie_secret: randomBytes(24).toString('base64url'),
      external_host: externalOf(p),
      mode: p.mode ?? 'proxy',
      ...((p.mode ?? 'proxy') === 'proxy' ? { internal_host: p.internal_host ?? upstream.url } : {}),
      ...p.extra,
    })),
    ...opts.extraConfig,
  };
  const configYaml = stringify(config);
  let outpost: Outpost;
  const start = async () => {
    const parsed = parseConfig(configYaml, { source: 'test config', baseDir: dir });
    outpost = await Outpost.create(parsed, { logger: quietLogger(), ...opts.outpostOptions });
    await outpost.listen();
  };
  await start();
  return {
    idp: idpServer,
    upstream,
    get outpost() {
      return outpost;
    },
    port,
    httpsPort,
    journal,
    configYaml,
    url: (host, path = '/') => `http://${host}:${port}${path}`,
    stopOutpost: async () => {
      await outpost.close();
    },
    restartOutpost: async () => {
      await start();
    },
    close: async () => {
      await outpost.close().catch(() => undefined);
      await upstream.close();
      await idpServer.close();
      if (!opts.journal) rmSync(dir, { recursive: true, force: true });
    },
  };
  }
}

/**
 * Another replica of a stack: the same configuration (providers, secrets, a shared session store)
 * on another listener, in this process. Close it before the stack.
 */
export async function startReplica(stack: Stack): Promise<{ outpost: Outpost; port: number }> {
  const port = await freePort();
  const config = parse(stack.configYaml) as { outpost: { listeners: { http: string } } };
  config.outpost.listeners.http = `127.0.0.1:${port}`;
  const outpost = await Outpost.create(parseConfig(stringify(config), { source: 'replica' }), { logger: quietLogger() });
  await outpost.listen();
  return { outpost, port };
}
