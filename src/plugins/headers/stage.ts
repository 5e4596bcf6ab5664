// The header stage: the identity headers of the session (X-authentik-*, basic auth,
// additionalHeaders) and, in proxy mode, the whole header set sent upstream — with every
// client-sent copy of a header Portcullis emits removed, in any case and with `_` for `-`,
// on authenticated and allowlisted requests alike. The Authorization header is dropped when basic
// auth replaces it, and when it carried the bearer token that authenticated the request.
import { CONTINUE, type HeaderMap, type RequestContext, type Stage, type StageOutcome } from '../../pipeline/contract.js';
import type { ProviderRegistry, ProviderRuntime } from '../../config/provider.js';
import type { SessionRecord, SessionStore } from '../../sessions/store.js';
import { PerSessionCache } from '../../sessions/per-session-cache.js';
import { cookieRemover } from '../../http/cookies.js';
import { HOP_BY_HOP_HEADERS } from '../../http/hop-by-hop.js';
import { hasUnderscore } from '../../http/header-names.js';

/**
 * Headers a client may never set for the upstream (normalized: lower case, `_` → `-`): those
 * Portcullis sets itself, and the rewrite headers application frameworks believe (IIS, Symfony,
 * Laminas read X-Original-URL / X-Rewrite-URL as the path to serve): the decision was made on the
 * request target, so nothing may tell the application to serve another one, whoever the peer.
 */
const RESERVED = new Set([
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-uri',
  'x-forwarded-method',
  'x-original-url',
  'x-original-uri',
  'x-original-method',
  'x-rewrite-url',
  'x-original-host',
  'x-host',
]);
/**
 * Client-address and scheme headers that frameworks believe (Rails, Django, Spring, Express's
 * `trust proxy`, …): passed on only from a trusted proxy, which vouches for them as it does for
 * X-Forwarded-For.
 */
const FROM_TRUSTED_PROXIES_ONLY = new Set([
  'forwarded',
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-forwarded',
  'forwarded-for',
  'x-forwarded-ssl',
  'x-forwarded-scheme',
  'x-forwarded-protocol',
  'x-url-scheme',
  'front-end-https',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
]);
const IDENTITY_PREFIX = 'x-authentik-';
/**
 * Hop-by-hop headers; `host`, which the upstream stage sets; and `expect`: Portcullis itself
 * tells the client to continue (the upstream transport), and undici refuses to send it.
 */
const NOT_COPIED = new Set([...HOP_BY_HOP_HEADERS, 'host', 'expect']);

export interface HeaderPolicy {
  readonly outpostName: string;
  readonly version: string;
}

/** The identity headers of a session, as [name, value] pairs (names lower case). */
export function buildIdentityHeaders(session: SessionRecord, p: ProviderRuntime, policy: HeaderPolicy): [string, string][] {
  const c = session.claims;
  const out: [string, string][] = [
    ['x-authentik-username', headerValue(c.preferred_username)],
    ['x-authentik-groups', joinList(c.groups)],
    ['x-authentik-entitlements', joinList(c.entitlements)],
    ['x-authentik-email', headerValue(c.email)],
    ['x-authentik-name', headerValue(c.name)],
    ['x-authentik-uid', headerValue(c.sub)],
    ['x-authentik-jwt', session.accessToken ?? session.idToken],
    ['x-authentik-meta-jwks', p.oidc.jwksUri],
    ['x-authentik-meta-outpost', headerValue(policy.outpostName)],
    ['x-authentik-meta-provider', headerValue(p.name)],
    ['x-authentik-meta-app', headerValue(p.slug)],
    ['x-authentik-meta-version', policy.version],
  ];
  if (p.config.basic_auth_enabled) {
    const attrs = (c.ak_proxy?.user_attributes ?? {}) as Record<string, unknown>;
    const password = attrs[p.config.basic_auth_password_attribute];
    if (typeof password === 'string' && password !== '') {
      const userAttr = p.config.basic_auth_user_attribute ? attrs[p.config.basic_auth_user_attribute] : undefined;
      const user = typeof userAttr === 'string' && userAttr !== '' ? userAttr : headerValue(c.email);
      out.push(['authorization', 'Basic ' + Buffer.from(`${user}:${password}`, 'utf8').toString('base64')]);
    }
  }
  for (const [name, value] of session.proxy?.additionalHeaders ?? []) {
    // Validation drops them at login; a session stored before that rule may still carry one.
    if (hasUnderscore(name)) continue;
    const existing = out.findIndex(([n]) => n === name);
    if (existing === -1) out.push([name, headerValue(value)]);
    else out[existing] = [name, headerValue(value)];
  }
  return out;
}

/** A claim as a header value: control characters removed, UTF-8 sent as bytes (as Go does). */
export function headerValue(v: unknown): string {
  if (v === undefined || v === null) return '';
  let s = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
  if (/[\x00-\x1f\x7f]/.test(s)) s = s.replace(/[\x00-\x1f\x7f]/g, '');
  if (/[^\x20-\x7e]/.test(s)) s = Buffer.from(s, 'utf8').toString('latin1');
  return s;
}

function joinList(v: unknown): string {
  if (!Array.isArray(v)) return '';
  return headerValue(v.filter((x) => typeof x === 'string').join('|'));
}

interface IdentityHeaders {
  /** `[name, value, …]` for the upstream request. */
  readonly flat: string[];
  /** The same, as an object, for forward-auth answers. */
  readonly map: HeaderMap;
  /**
   * Their names that the `x-authentik-` prefix rule does not drop from the client's headers
   * already: basic auth's `authorization` and the additionalHeaders names. Null when none.
   */
  readonly extraNames: ReadonlySet<string> | null;
}

/** What a client header's name alone decides (the verdict map, built once per stage). */
const NEVER = 1;
const TRUSTED_ONLY = 2;
const AUTHORIZATION = 3;
const COOKIE = 4;

export class HeadersStage implements Stage {
  readonly name = 'headers';
  private readonly policy: HeaderPolicy;
  /** Identity headers per session, built on first use: claims do not change during a session. */
  private readonly cache = new PerSessionCache<IdentityHeaders>();
  private readonly stripAuthorization: boolean[];
  /**
   * One lookup per client header for what its name decides: never copied (hop-by-hop, reserved,
   * and every provider's additional_header_names: what additionalHeaders may produce on this
   * outpost), only from trusted proxies, and the two with their own rules.
   */
  private readonly verdicts: ReadonlyMap<string, number>;
  private readonly removeOwnCookies: (header: string) => string | undefined;
  /** Names seen at any login (the store's live set, shared by replicas). */
  private readonly seenNames: ReadonlySet<string>;

  constructor(
    outpostName: string,
    private readonly providers: ProviderRegistry,
    version: string,
    store: SessionStore,
  ) {
    this.policy = { outpostName, version: `portcullis/${version}` };
    // Every provider's cookies, not only the current one's: a forward_domain cookie scoped to the
    // whole domain reaches a proxy-mode application on a host of it, and could be replayed.
    this.removeOwnCookies = cookieRemover(new Set(providers.all.flatMap((p) => [p.cookieName, p.flowCookieName])));
    this.stripAuthorization = providers.all.map((p) => p.config.basic_auth_enabled);
    const verdicts = new Map<string, number>([
      ['authorization', AUTHORIZATION],
      ['cookie', COOKIE],
    ]);
    for (const name of FROM_TRUSTED_PROXIES_ONLY) verdicts.set(name, TRUSTED_ONLY);
    for (const name of [...NOT_COPIED, ...RESERVED, ...providers.all.flatMap((p) => [...p.additionalHeaderNames])]) verdicts.set(name, NEVER);
    this.verdicts = verdicts;
    this.seenNames = store.headerNames();
  }

  run(ctx: RequestContext): StageOutcome {
    const identity = ctx.session === null ? null : this.identityOf(ctx.session, this.providers.all[ctx.provider.index]!);
    ctx.identityHeaders = identity === null ? null : identity.map;
    if (ctx.entry === 'proxy') ctx.upstreamHeaders = this.upstreamHeaders(ctx, identity);
    return CONTINUE;
  }

  private identityOf(session: SessionRecord, p: ProviderRuntime): IdentityHeaders {
    let entry = this.cache.get(session);
    if (entry === undefined) {
      const pairs = buildIdentityHeaders(session, p, this.policy);
      const map: HeaderMap = {};
      const flat: string[] = [];
      for (const [n, v] of pairs) {
        map[n] = v;
        flat.push(n, v);
      }
      const extra = pairs.map(([n]) => n).filter((n) => !n.startsWith(IDENTITY_PREFIX));
      entry = { flat, map, extraNames: extra.length === 0 ? null : new Set(extra) };
      this.cache.set(session, entry);
    }
    return entry;
  }

  private upstreamHeaders(ctx: RequestContext, identity: IdentityHeaders | null): string[] {
    const src = ctx.headers;
    const out: string[] = [];
    const connection = src.connection;
    // `keep-alive` and `close` name no header to drop: spare the common case the parsing.
    const connectionListed = connection === undefined || connection === '' || connection === 'keep-alive' || connection === 'close' ? null : connection.toLowerCase().split(',').map((s) => s.trim());
    // The token that authenticated this request is Portcullis's credential, not the upstream's.
    const stripAuth = this.stripAuthorization[ctx.provider.index]! || ctx.headerAuth === 'accepted';
    const trusted = ctx.peerTrusted;
    const extraNames = identity === null ? null : identity.extraNames;
    const verdicts = this.verdicts;
    for (const name in src) {
      const value = src[name];
      // HTTP/2 pseudo-headers (:method, :path, :authority, :scheme) belong to the client's hop.
      if (value === undefined || name.charCodeAt(0) === 58 /* : */) continue;
      // An underscore spelling of anything is dropped: some servers fold it into `-`.
      if (hasUnderscore(name)) continue;
      const verdict = verdicts.get(name);
      if (verdict !== undefined) {
        if (verdict === NEVER || (verdict === TRUSTED_ONLY && !trusted) || (verdict === AUTHORIZATION && stripAuth)) continue;
        if (verdict === COOKIE) {
          // Claims can never name `cookie` (header-names.ts): only the Connection header could drop it.
          if (connectionListed !== null && connectionListed.includes(name)) continue;
          const rest = this.removeOwnCookies(value as string);
          if (rest !== undefined) out.push('cookie', rest);
          continue;
        }
      }
      if (name.startsWith(IDENTITY_PREFIX)) continue;
      if (connectionListed !== null && connectionListed.includes(name)) continue;
      if (extraNames !== null && extraNames.has(name)) continue;
      // Any name additionalHeaders produced at a login on this outpost, whoever the user (or nobody).
      if (this.seenNames.has(name)) continue;
      if (typeof value === 'string') out.push(name, value);
      else if (name === 'set-cookie') for (const v of value) out.push(name, v);
      else out.push(name, value.join(', '));
    }
    const xff = trusted ? src['x-forwarded-for'] : undefined;
    out.push(
      'x-forwarded-for',
      xff ? `${Array.isArray(xff) ? xff.join(', ') : xff}, ${ctx.peerIp}` : ctx.peerIp,
      'x-forwarded-proto',
      ctx.target.scheme,
      'x-forwarded-host',
      ctx.target.host,
    );
    // One copy of the session's list, not a push per entry.
    return identity === null ? out : out.concat(identity.flat);
  }
}
