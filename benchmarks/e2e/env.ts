// The end-to-end environment: one upstream, the test identity provider, and each server under
// test in its own child process. Authenticated scenarios log in through the real OIDC flow
// (browserless: the IdP's login form, the code exchange at Portcullis' callback).
import { randomBytes } from 'node:crypto';
import { startIdentityProvider, DEMO_USERS, type RunningIdp } from '../../src/demo/identity-provider.js';
import { CookieJar, loginThrough } from '../../test/support/browserless.js';
import { freePort, startNodeServer, type Child } from '../lib/proc.js';
import { APACHE_REDIRECT_PATH } from './apache.js';

export const ALICE = { username: 'alice', password: 'alice' };
const CALLBACK = '/outpost.goauthentik.io/callback?X-authentik-auth-callback=true';

export interface PortcullisSpec {
  /** Provider name; also the host label (`<name>.localtest`). */
  name: string;
  mode: 'proxy' | 'forward_single';
  port: number;
  clientSecret: string;
  /** Also an HTTPS listener (h2 and http/1.1 by ALPN) on this port, serving the same provider. */
  httpsPort?: number;
  /** outpost.workers (only the command-line start, startPortcullisService, acts on it). */
  workers?: number;
}

export interface Env {
  idp: RunningIdp;
  upstream: Child;
  upstreamUrl: string;
  /** Registered before the IdP starts, started on demand. */
  portcullis: Map<string, PortcullisSpec>;
  express: { port: number; clientSecret: string } | null;
  /** Apache + mod_auth_openidc (scenario 12), registered with the IdP when asked for. */
  apache: { port: number; clientSecret: string } | null;
  children: Child[];
  close(): Promise<void>;
}

export interface EnvOptions {
  /** Portcullis instances to register with the IdP (name → mode). */
  portcullis: { name: string; mode: 'proxy' | 'forward_single'; https?: boolean; workers?: number }[];
  express: boolean;
  apache?: boolean;
  nodeArgs?: string[];
}

export async function startEnv(opts: EnvOptions): Promise<Env> {
  const children: Child[] = [];
  const upstream = await startNodeServer('upstream', 'upstream', {});
  children.push(upstream);
  const upstreamUrl = `http://127.0.0.1:${upstream.info.port}`;
  const portcullis = new Map<string, PortcullisSpec>();
  for (const { https, ...p } of opts.portcullis) {
    portcullis.set(p.name, { ...p, port: await freePort(), clientSecret: randomBytes(18).toString('base64url'), ...(https ? { httpsPort: await freePort() } : {}) });
  }
  const express = opts.express ? { port: await freePort(), clientSecret: randomBytes(18).toString('base64url') } : null;
  const clients = [...portcullis.values()].map((p) => ({
    client_id: `client-${p.name}`,
    client_secret: p.clientSecret,
    redirect_uris: [`http://${p.name}.localtest:${p.port}${CALLBACK}`],
    post_logout_redirect_uris: [`http://${p.name}.localtest:${p.port}/`],
  }));
  const apache = opts.apache ? { port: await freePort(), clientSecret: randomBytes(18).toString('base64url') } : null;
  if (apache) clients.push({ client_id: 'client-apache', client_secret: apache.clientSecret, redirect_uris: [`http://apache.localtest:${apache.port}${APACHE_REDIRECT_PATH}`], post_logout_redirect_uris: [] });
  if (express) clients.push({ client_id: 'client-express', client_secret: express.clientSecret, redirect_uris: [`http://express.localtest:${express.port}/callback`], post_logout_redirect_uris: [] });
  const idp = await startIdentityProvider({ clients, users: DEMO_USERS });
  let closed = false;
  return {
    idp,
    upstream,
    upstreamUrl,
    portcullis,
    express,
    apache,
    children,
    async close() {
      if (closed) return;
      closed = true;
      for (const c of children.splice(0).reverse()) await c.stop().catch(() => undefined);
      await idp.close().catch(() => undefined);
    },
  };
}

/** The config of one Portcullis instance, as the YAML file would hold it. */
export function portcullisConfig(env: Env, spec: PortcullisSpec): Record<string, unknown> {
  return {
    outpost: {
      name: 'bench outpost',
      listeners: { http: `127.0.0.1:${spec.port}`, https: spec.httpsPort ? `127.0.0.1:${spec.httpsPort}` : null },
      log_level: 'silent',
      // Scenarios 3-5 and 15-17 run one process (Outpost.create); 13 and 14 set it (the CLI's path).
      workers: spec.workers ?? 1,
      ...(spec.mode === 'proxy' ? {} : { trusted_proxies: ['127.0.0.1'] }),
    },
    providers: [
      {
        name: spec.name,
        issuer: env.idp.issuer,
        client_id: `client-${spec.name}`,
        client_secret: spec.clientSecret,
        cookie_secret: randomBytes(24).toString('base64url'),
        external_host: `http://${spec.name}.localtest:${spec.port}`,
        mode: spec.mode,
        skip_path_regex: '^/public/\n^/static/\n^/health$\n',
        ...(spec.mode === 'proxy' ? { internal_host: env.upstreamUrl } : {}),
      },
    ],
  };
}

export async function startPortcullis(env: Env, name: string, nodeArgs?: string[], logLevel?: string): Promise<Child> {
  const spec = env.portcullis.get(name);
  if (!spec) throw new Error(`no Portcullis instance ${name}`);
  const child = await startNodeServer(`portcullis-${name}`, 'portcullis', { config: portcullisConfig(env, spec), logLevel }, { nodeArgs });
  env.children.push(child);
  return child;
}

/**
 * Portcullis started as the command line does (runService), so that `outpost.workers` applies:
 * with 2 the child is the cluster's primary and its workers are its children.
 */
export async function startPortcullisService(env: Env, name: string): Promise<Child> {
  const spec = env.portcullis.get(name);
  if (!spec) throw new Error(`no Portcullis instance ${name}`);
  // Always silent: the service logs to its stdout, which is the harness's.
  const config = portcullisConfig(env, spec);
  const child = await startNodeServer(`portcullis-${name}`, 'portcullis-service', { config, port: spec.port }, { timeoutMs: 60_000 });
  env.children.push(child);
  return child;
}

export async function startExpress(env: Env): Promise<Child> {
  if (!env.express) throw new Error('express was not registered');
  const child = await startNodeServer('express', 'express', {
    port: env.express.port,
    upstream: env.upstreamUrl,
    baseURL: `http://express.localtest:${env.express.port}`,
    issuer: env.idp.issuer,
    clientID: 'client-express',
    clientSecret: env.express.clientSecret,
    secret: randomBytes(32).toString('base64url'),
  });
  env.children.push(child);
  return child;
}

/**
 * One real login; returns the Cookie header for `host` afterwards. `jar` may hold the IdP's
 * session already (then the IdP skips its login form). The host's cookies are removed from the
 * jar afterwards, so the next login with the same jar makes a new session.
 */
export async function login(startUrl: string, host: string, jar = new CookieJar(), headers?: Record<string, string>): Promise<string> {
  const { final, hops } = await loginThrough(startUrl, ALICE, { jar, headers });
  const url = new URL(`http://${host}/`);
  const cookie = jar.header(url);
  if (!cookie) throw new Error(`login at ${startUrl} left no cookie for ${host} (final ${final.status}; ${hops.map((h) => `${h.status} ${h.url}`).join(' → ')})`);
  for (const c of jar.all()) if (c.domain === url.hostname) jar.delete(c.name, url.hostname);
  return cookie;
}
