// Everything about a provider that can be computed at config load: host keys, cookie names and
// attributes, redirect policy, callback URL, codecs, the OIDC client. Requests only look things up.
import { createHash } from 'node:crypto';
import type { ProviderConfig, PortcullisConfig } from './schema.js';
import { isLoopbackHostname } from './load.js';
import { normalizeHost, hostnameOf } from '../http/normalize.js';
import { cookieAttributeSuffix } from '../http/cookies.js';
import type { RedirectPolicy } from '../http/redirects.js';
import { createCookieCodecs, deriveKey, type CookieCodec } from '../sessions/cookie-codec.js';
import { OidcClient, type OidcSettings } from '../oidc/client.js';
import type { Logger } from '../pipeline/logger.js';
import type { ProviderView } from '../pipeline/contract.js';

export const OUTPOST_PREFIX = '/outpost.goauthentik.io';

export interface ProviderRuntime {
  /**
   * What stages see as `ctx.provider`: a frozen, secret-free copy of the identity fields. Built-in
   * stages find this runtime again by `view.index` (or `runtimeOf(view)`), a route third parties lack.
   */
  readonly view: ProviderView;
  readonly index: number;
  readonly name: string;
  readonly slug: string;
  readonly appName: string;
  readonly mode: ProviderConfig['mode'];
  readonly config: ProviderConfig;
  /** external_host's origin (config load refuses a path). */
  readonly externalBase: string;
  readonly externalScheme: 'http' | 'https';
  /** Normalized host of external_host: the routing key. */
  readonly externalHost: string;
  /** forward_domain: cookie domain without leading dot, lower case; else null. */
  readonly domain: string | null;
  /** Upstream origin (proxy mode) and the Host header it gets by default. */
  readonly internalOrigin: string | null;
  readonly internalHostHeader: string | null;
  readonly internalTlsVerify: boolean;
  /** `authentik_proxy_` + 8 hex of sha256(client_id). */
  readonly cookieName: string;
  /** Holds in-flight logins (PKCE verifier, nonce) for this browser. */
  readonly flowCookieName: string;
  /** `; Path=/; HttpOnly; SameSite=Lax[; Secure][; Domain=…]`. */
  readonly cookieSuffix: string;
  readonly sessionTtlSeconds: number;
  /** session_max_age: the longest life of a refreshed session (seconds). */
  readonly sessionMaxAgeSeconds: number;
  readonly sessionCodec: CookieCodec;
  readonly flowCodec: CookieCodec;
  /** HMAC key for the signed `state` parameter. */
  readonly stateKey: Buffer;
  readonly redirectPolicy: RedirectPolicy;
  /** The redirect_uri registered at the IdP (authentik's form, with its query). */
  readonly callbackUrl: string;
  /** Where the IdP sends the browser after sign-out: post_logout_redirect_uri, or the signed-out page. */
  readonly postLogoutUrl: string;
  /** Whether postLogoutUrl is Portcullis's own signed-out page (it then gets a signed `state`). */
  readonly postLogoutIsOwnPage: boolean;
  readonly oidc: OidcClient;
  /** additional_header_names, lower case: the additionalHeaders this provider is declared to produce. */
  readonly additionalHeaderNames: ReadonlySet<string>;
}

/** View → runtime, for built-in code holding only a request's `ctx.provider` (never exported publicly). */
const runtimes = new WeakMap<ProviderView, ProviderRuntime>();

/** The full runtime behind a provider view (built-in stages only). */
export function runtimeOf(view: ProviderView): ProviderRuntime {
  const p = runtimes.get(view);
  if (p === undefined) throw new Error(`provider view "${view.name}" was not issued by this outpost`);
  return p;
}

/** The secret-free view of a runtime: a plain frozen object holding copies of strings only. */
function viewOf(p: Omit<ProviderRuntime, 'view'>): ProviderView {
  return Object.freeze({
    index: p.index,
    name: p.name,
    slug: p.slug,
    appName: p.appName,
    mode: p.mode,
    externalBase: p.externalBase,
    externalScheme: p.externalScheme,
    externalHost: p.externalHost,
    cookieDomain: p.domain,
  });
}

export class ProviderRegistry {
  private readonly byHost = new Map<string, ProviderRuntime>();
  /** forward_domain providers, longest cookie domain first. */
  private readonly domainProviders: ProviderRuntime[];

  constructor(readonly all: readonly ProviderRuntime[]) {
    for (const p of all) this.byHost.set(p.externalHost, p);
    this.domainProviders = all.filter((p) => p.domain !== null).sort((a, b) => b.domain!.length - a.domain!.length);
  }

  /** The provider for a normalized host: exact external host, else a forward_domain's cookie domain. */
  forHost(host: string): ProviderRuntime | undefined {
    const exact = this.byHost.get(host);
    if (exact !== undefined || this.domainProviders.length === 0) return exact;
    const hostname = hostnameOf(host);
    for (const p of this.domainProviders) {
      const d = p.domain!;
      if (hostname === d || hostname.endsWith('.' + d)) return p;
    }
    return undefined;
  }

  byName(name: string): ProviderRuntime | undefined {
    return this.all.find((p) => p.name === name);
  }
}

export function cookieNameFor(clientId: string): string {
  return 'authentik_proxy_' + createHash('sha256').update(clientId).digest('hex').slice(0, 8);
}

export function issuerAllowsHttp(issuer: string): boolean {
  const u = new URL(issuer);
  return u.protocol === 'http:' && isLoopbackHostname(u.hostname);
}

/**
 * `previous`: the registry of the config being replaced by a reload. A provider whose OpenID
 * settings are unchanged keeps its client (discovery and keys), so a reload does not make the
 * outpost unready or send every login through discovery again.
 */
export async function buildProviders(config: PortcullisConfig, log: Logger, previous?: ProviderRegistry): Promise<ProviderRegistry> {
  const reusable = new Map((previous?.all ?? []).map((p) => [oidcSettingsKey(p.oidc.settings), p.oidc]));
  const specs = config.providers.flatMap((p, i) => [
    { name: `p${i}.session`, secret: p.cookie_secret, purpose: `session:${p.client_id}`, expirySeconds: cookieLifetime(p) },
    { name: `p${i}.flow`, secret: p.cookie_secret, purpose: `flow:${p.client_id}`, expirySeconds: 600 },
  ]);
  const codecs = await createCookieCodecs(specs);
  const all = config.providers.map((p, index): ProviderRuntime => {
    const ext = new URL(p.external_host);
    const externalScheme = ext.protocol === 'https:' ? 'https' : 'http';
    const externalBase = ext.origin;
    const externalHost = normalizeHost(ext.host, externalScheme);
    const domain = p.mode === 'forward_domain' && p.cookie_domain ? p.cookie_domain.replace(/^\./, '').toLowerCase() : null;
    const internal = p.internal_host ? new URL(p.internal_host) : null;
    const cookieName = cookieNameFor(p.client_id);
    const ttl = Number(p.access_token_validity);
    const settings: OidcSettings = {
      issuer: p.issuer,
      clientId: p.client_id,
      clientSecret: p.client_secret,
      authMethod: p.token_endpoint_auth_method ?? 'client_secret_basic',
      scopes: p.offline_access && !p.scopes_to_request.includes('offline_access') ? [...p.scopes_to_request, 'offline_access'] : p.scopes_to_request,
      allowHttp: issuerAllowsHttp(p.issuer),
    };
    const runtime: Omit<ProviderRuntime, 'view'> = {
      index,
      name: p.name,
      slug: p.assigned_application_slug ?? slugify(p.name),
      appName: p.assigned_application_name ?? p.name,
      mode: p.mode,
      config: p,
      externalBase,
      externalScheme,
      externalHost,
      domain,
      internalOrigin: internal ? internal.origin : null,
      internalHostHeader: internal ? internal.host : null,
      internalTlsVerify: p.internal_host_ssl_validation,
      cookieName,
      flowCookieName: cookieName + '_flow',
      cookieSuffix: cookieAttributeSuffix({ secure: externalScheme === 'https', domain: p.cookie_domain || undefined }),
      sessionTtlSeconds: ttl,
      sessionMaxAgeSeconds: Number(p.session_max_age),
      sessionCodec: codecs.get(`p${index}.session`)!,
      flowCodec: codecs.get(`p${index}.flow`)!,
      stateKey: deriveKey(p.cookie_secret, `state:${p.client_id}`),
      redirectPolicy: { externalBase, externalHost, cookieDomain: domain },
      callbackUrl: `${externalBase}${OUTPOST_PREFIX}/callback?X-authentik-auth-callback=true`,
      postLogoutUrl: p.post_logout_redirect_uri ?? `${externalBase}${OUTPOST_PREFIX}/signed_out`,
      postLogoutIsOwnPage: p.post_logout_redirect_uri === undefined,
      additionalHeaderNames: new Set((p.additional_header_names ?? []).map((n) => n.toLowerCase())),
      oidc: reusable.get(oidcSettingsKey(settings)) ?? new OidcClient(settings, log.child({ provider: p.name })),
    };
    const view = viewOf(runtime);
    const full: ProviderRuntime = { ...runtime, view };
    runtimes.set(view, full);
    return full;
  });
  return new ProviderRegistry(all);
}

function oidcSettingsKey(s: OidcSettings): string {
  return JSON.stringify([s.issuer, s.clientId, s.clientSecret, s.authMethod, s.scopes, s.allowHttp, s.timeoutSeconds ?? null]);
}

/** The session cookie is accepted as long as the longest session it can name (a refreshed one). */
function cookieLifetime(p: ProviderConfig): number {
  const ttl = Number(p.access_token_validity);
  return p.offline_access ? Math.max(ttl, Number(p.session_max_age)) : ttl;
}

function slugify(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'app';
}
