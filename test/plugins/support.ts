// Shared harness for the stage unit tests: an outpost built by `Outpost.create` (the real DI
// container, config loader and providers) that never listens, a memory-only session store, a
// loopback IdP for OIDC discovery, and helpers that make RequestContexts with the outpost's own
// context factory. Stages are then run directly with `stage.run(ctx)`: no HTTP server.
// The IdP (and oidc-provider) is loaded only by tests that need discovery (X-authentik-meta-jwks).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/index.js';
import type { ProviderRuntime } from '../../src/config/provider.js';
import type { RunningIdp } from '../../src/demo/identity-provider.js';
import type { RequestContext, Respond, Stage } from '../../src/pipeline/contract.js';
import type { Logger } from '../../src/pipeline/logger.js';
import type { Exit } from '../../src/pipeline/exits.js';
import { Outpost } from '../../src/server/outpost.js';
import { EmbeddedSessionStore } from '../../src/sessions/embedded-store.js';
import { proxySettingsOf as deriveProxySettings } from '../../src/oidc/proxy-claims.js';
import type { Claims, SessionProxySettings, SessionRecord, SessionStore } from '../../src/sessions/store.js';

/** The peer listed in `trusted_proxies` (a reverse proxy in front of the outpost). */
export const TRUSTED_PEER = '10.0.0.1';
/** Any other client. */
export const UNTRUSTED_PEER = '192.0.2.7';

/**
 * The providers every stage test shares:
 *  - app:   proxy, with allowlist lines (blank lines, a `(?i)` line, an unanchored line) and access rules;
 *  - basic: proxy with basic auth from user attributes;
 *  - other: proxy on a non-default port, without rules or allowlist;
 *  - fwd:   forward_single, with one unnamed access rule on /admin;
 *  - dom:   forward_domain for *.corp.localtest (auth host auth.corp.localtest).
 */
export const APP_SKIP_LINES = [
  '^/public/',
  '',
  '   ',
  '(?i)^/caseless/',
  '^/Exact$',
  '/anywhere-',
  '^/crlf$\r',
].join('\n');

export const DOM_SKIP_LINES = ['^https://wiki\\.corp\\.localtest/public/', '^/plain/', '/leak-check/'].join('\n');

export function configYaml(issuer: string, extra: { appSkip?: string } = {}): string {
  const provider = (name: string, fields: Record<string, unknown>) => ({
    name,
    issuer,
    client_id: `client-${name}`,
    client_secret: `secret-${name}`,
    cookie_secret: `cookie-secret-${name}-0123456789`,
    ...fields,
  });
  return stringify({
    outpost: { name: 'test outpost', listeners: { http: null, https: null }, log_level: 'silent', trusted_proxies: [TRUSTED_PEER] },
    providers: [
      provider('app', {
        external_host: 'https://app.localtest',
        internal_host: 'http://app-internal.localtest:8080/ignored/path',
        mode: 'proxy',
        skip_path_regex: extra.appSkip ?? APP_SKIP_LINES,
        access_rules: [
          { name: 'admins only', paths: ['^/admin(/|$)'], when: '"admins" in claims.groups' },
          { name: 'verified email', paths: ['^/reports(/|$)'], when: 'claims.email_verified == true' },
        ],
      }),
      provider('basic', {
        external_host: 'https://basic.localtest',
        internal_host: 'http://127.0.0.1:8081',
        mode: 'proxy',
        basic_auth_enabled: true,
        basic_auth_user_attribute: 'basic_user',
        basic_auth_password_attribute: 'basic_password',
      }),
      provider('other', {
        external_host: 'https://other.localtest:8443',
        internal_host: 'http://127.0.0.1:9',
        mode: 'proxy',
      }),
      provider('fwd', {
        external_host: 'https://fwd.localtest',
        mode: 'forward_single',
        skip_path_regex: '^/public/',
        access_rules: [{ paths: ['^/admin(/|$)'], when: '"admins" in claims.groups' }],
      }),
      provider('dom', { external_host: 'https://auth.corp.localtest', mode: 'forward_domain', cookie_domain: 'corp.localtest', skip_path_regex: DOM_SKIP_LINES }),
    ],
  });
}

export interface RequestSpec {
  url: string;
  /** The Host header (proxy requests); forward-auth helpers set their own headers. */
  host?: string;
  method?: string;
  headers?: IncomingHttpHeaders;
  /** Socket peer; UNTRUSTED_PEER by default. */
  peer?: string;
  /** TLS socket (scheme https for proxy requests); true by default. */
  encrypted?: boolean;
}

export interface Harness {
  readonly outpost: Outpost;
  readonly store: SessionStore;
  /** The IdP the providers discovered, or null when created with `discover: false`. */
  readonly idp: RunningIdp | null;
  /** The providers' issuer (an unreachable loopback URL without an IdP). */
  readonly issuer: string;
  stage<T extends Stage = Stage>(name: string): T;
  /** An exit of the outpost (`upstream`, `forward`, …). */
  exit<T extends Exit = Exit>(name: string): T;
  provider(name: string): ProviderRuntime;
  /** The context factory's answer: a context, or a Respond when the request cannot be served. */
  build(spec: RequestSpec): RequestContext | Respond;
  /** A context; throws when the factory answers instead. */
  ctx(spec: RequestSpec): RequestContext;
  /** A proxy request on a provider's host (Host from external_host). */
  proxy(provider: string, url: string, headers?: IncomingHttpHeaders, spec?: Partial<RequestSpec>): RequestContext;
  /** An nginx auth_request for `originalUrl` (X-Original-URL), from the trusted reverse proxy. */
  nginx(originalUrl: string, headers?: IncomingHttpHeaders): RequestContext;
  /** A Traefik ForwardAuth request (X-Forwarded-*), from the trusted reverse proxy. */
  traefik(originalUrl: string, headers?: IncomingHttpHeaders): RequestContext;
  /** A session record for a provider (not stored); proxy settings from `claims.ak_proxy` as at login. */
  session(provider: string, overrides?: SessionOverrides): SessionRecord;
  /** `name=value` of a provider's session cookie naming `id`, value URL-encoded as the login sets it. */
  sessionCookie(provider: string, id: string): string;
  close(): Promise<void>;
}

export interface SessionOverrides {
  id?: string;
  claims?: Partial<Claims>;
  expiresAt?: number;
  idToken?: string;
  accessToken?: string;
  proxy?: SessionProxySettings;
}

let requestCounter = 0;

/** Issuer of providers built without an IdP: nothing listens there, background discovery just fails. */
const NO_IDP_ISSUER = 'http://127.0.0.1:1/no-idp';

export interface HarnessOptions {
  /** Wraps the memory store (e.g. an asynchronous store). */
  wrapStore?: (store: EmbeddedSessionStore) => SessionStore;
  appSkip?: string;
  /** Start an IdP and wait for discovery (default true); false for stages that do not need it. */
  discover?: boolean;
}

export async function createHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const discover = opts.discover !== false;
  const idp = discover ? await (await import('../../src/demo/identity-provider.js')).startIdentityProvider({ clients: [] }) : null;
  const issuer = idp?.issuer ?? NO_IDP_ISSUER;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-stage-test-'));
  const silent = pino({ level: 'silent' });
  let outpost: Outpost;
  try {
    const config = parseConfig(configYaml(issuer, { appSkip: opts.appSkip }), { source: 'stage test config', baseDir: dir });
    const memory = new EmbeddedSessionStore({ path: null, keys: new Map(), log: silent as unknown as Logger });
    outpost = await Outpost.create(config, { logger: silent, store: opts.wrapStore ? opts.wrapStore(memory) : memory });
    if (discover) await Promise.all(outpost.providers.all.map((p) => p.oidc.ready()));
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    await idp?.close();
    throw err;
  }

  const provider = (name: string): ProviderRuntime => {
    const p = outpost.providers.byName(name);
    if (!p) throw new Error(`no provider ${name}`);
    return p;
  };
  const build = (spec: RequestSpec): RequestContext | Respond =>
    outpost.doors.context(
      {
        method: spec.method ?? 'GET',
        url: spec.url,
        headers: { ...(spec.host !== undefined ? { host: spec.host } : {}), ...spec.headers },
        socket: { remoteAddress: spec.peer ?? UNTRUSTED_PEER, encrypted: spec.encrypted ?? true },
      },
      `test-request-${++requestCounter}`,
    );
  const ctx = (spec: RequestSpec): RequestContext => {
    const built = build(spec);
    if ('kind' in built) throw new Error(`no context for ${spec.host ?? ''}${spec.url}: ${built.status} ${built.body ?? ''}`);
    return built;
  };
  const hostOf = (name: string) => new URL(provider(name).externalBase).host;

  return {
    outpost,
    store: outpost.store,
    idp,
    issuer,
    stage<T extends Stage = Stage>(name: string): T {
      const found = outpost.stages.find((b) => b.stage.name === name);
      if (!found) throw new Error(`no stage ${name}`);
      return found.stage as T;
    },
    exit<T extends Exit = Exit>(name: string): T {
      const found = outpost.exits.get(name);
      if (!found) throw new Error(`no exit ${name}`);
      return found as T;
    },
    provider,
    build,
    ctx,
    proxy: (name, url, headers = {}, spec = {}) => ctx({ host: hostOf(name), url, headers, ...spec }),
    nginx: (originalUrl, headers = {}) =>
      ctx({ url: '/outpost.goauthentik.io/auth/nginx', host: 'outpost.internal:9000', peer: TRUSTED_PEER, encrypted: false, headers: { 'x-original-url': originalUrl, ...headers } }),
    traefik: (originalUrl, headers = {}) => {
      const u = new URL(originalUrl);
      return ctx({
        url: '/outpost.goauthentik.io/auth/traefik',
        host: 'outpost.internal:9000',
        peer: TRUSTED_PEER,
        encrypted: false,
        headers: {
          'x-forwarded-proto': u.protocol.slice(0, -1),
          'x-forwarded-host': u.host,
          'x-forwarded-uri': u.pathname + u.search,
          'x-forwarded-method': 'GET',
          ...headers,
        },
      });
    },
    session(name, o = {}) {
      const now = Date.now();
      // As the login does: proxy settings from the ak_proxy claim unless given.
      const proxy = o.proxy ?? (o.claims?.ak_proxy ? proxySettingsOf(o.claims, provider(name)) : undefined);
      return {
        id: o.id ?? randomBytes(32).toString('base64url'),
        provider: name,
        userKey: `${issuer}\u0000alice-sub`,
        createdAt: now,
        expiresAt: o.expiresAt ?? now + 3_600_000,
        claims: {
          sub: 'alice-sub',
          iss: issuer,
          preferred_username: 'alice',
          email: 'alice@example.com',
          name: 'Alice Example',
          groups: ['staff'],
          entitlements: ['reports:read'],
          email_verified: true,
          ...o.claims,
        } as Claims,
        idToken: o.idToken ?? 'id.token.jwt',
        ...(o.accessToken !== undefined ? { accessToken: o.accessToken } : {}),
        ...(proxy !== undefined ? { proxy } : {}),
      };
    },
    sessionCookie(name, id) {
      const p = provider(name);
      return `${p.cookieName}=${encodeURIComponent(p.sessionCodec.encode({ s: id }))}`;
    },
    async close() {
      await outpost.close().catch(() => undefined);
      await idp?.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The `[name, value, …]` upstream list as pairs. */
export function pairsOf(list: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < list.length; i += 2) out.push([list[i]!, list[i + 1]!]);
  return out;
}

/** Every value of `name` in an upstream list. */
export function valuesOf(list: readonly string[], name: string): string[] {
  return pairsOf(list)
    .filter(([n]) => n === name)
    .map(([, v]) => v);
}

/** The proxy settings the login derives from a session's claims (the login's own derivation). */
export function proxySettingsOf(claims: Record<string, unknown>, p: ProviderRuntime): SessionProxySettings {
  return deriveProxySettings(claims, p.config).settings;
}
