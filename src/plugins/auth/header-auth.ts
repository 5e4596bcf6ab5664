// Header authentication (authentik's "intercept header auth"): a request without a session
// cookie may carry `Authorization: Bearer <token>`, or `Authorization: Basic` with the user name
// `goauthentik.io/token` and the token as password. The token is introspected (RFC 7662) at the
// provider's introspection endpoint with the provider's client credentials, and accepted only
// when it is active, issued to this provider's client (CVE-2024-47077: never trust the IdP
// alone to refuse other clients' tokens), unexpired and has a subject. An answer without the
// user's claims (LemonLDAP::NG's) is completed from the userinfo endpoint, asked with the token
// itself (provider setting fetch_userinfo, src/oidc/userinfo.ts); the claims are normalized
// (src/oidc/claims.ts). The result is a transient SessionRecord: never stored, never given a cookie.
//
// Answers are cached in memory, keyed by every input of the decision (provider, issuer,
// client_id, sha256 of the token — never the token itself): accepted tokens for at most 60 s
// and never past their expiry, refusals for 10 s (to blunt floods of made-up tokens), failures
// to reach the IdP for 5 s. A user's entries go when the user signs out.
//
// The IdP is protected from Portcullis's own traffic: a made-up token is never seen twice, so the
// cache alone would turn every request with a random bearer token into an introspection call.
// Before any call, a token that cannot be valid is refused locally (checkLocally: a JWT that does
// not verify against the provider's signing keys, is expired or names another client; with
// `access_token_format: jwt` anything that is not such a JWT), and the calls that remain are
// bounded per provider (IntrospectionBound: concurrency and rate), beyond which the request gets
// 503 with Retry-After instead of another call.
import { createHash } from 'node:crypto';
import * as client from 'openid-client';
import { decodeProtectedHeader, errors as jose, type JWSHeaderParameters } from 'jose';
import type { ProviderRuntime } from '../../config/provider.js';
import type { Logger } from '../../pipeline/logger.js';
import { NO_AUTH_EVENTS, type AuthEvents } from '../../pipeline/tokens.js';
import { proxySettingsOf } from '../../oidc/proxy-claims.js';
import { userKeyOf, userTag, type Claims, type SessionRecord } from '../../sessions/store.js';
import { normalizeClaims } from '../../oidc/claims.js';
import { OidcError } from '../../oidc/errors.js';
import { fetchUserinfo, mergeUserinfo, userinfoEndpointOf, wantsUserinfo } from '../../oidc/userinfo.js';

/** authentik's convention: Basic auth with this user name carries a token as the password. */
export const TOKEN_USERNAME = 'goauthentik.io/token';
/** Accepted tokens are re-introspected at least this often (a revoked token lives at most this long). */
export const POSITIVE_TTL_MS = 60_000;
/** Refused tokens (inactive, foreign, expired, malformed) are answered from memory this long. */
export const NEGATIVE_TTL_MS = 10_000;
/** After the IdP could not be asked, the same token gets 503 from memory this long. */
export const UNAVAILABLE_TTL_MS = 5_000;
/** Bound of each cache (accepted / refused); the oldest entry goes first when full. */
export const DEFAULT_MAX_ENTRIES = 10_000;
/** Longer tokens are refused without asking the IdP. */
export const MAX_TOKEN_LENGTH = 8192;

export type HeaderAuthResult =
  | { readonly kind: 'accepted'; readonly session: SessionRecord }
  | { readonly kind: 'refused'; readonly reason: string }
  | { readonly kind: 'unavailable'; readonly reason: string }
  | { readonly kind: 'limited'; readonly reason: string };

/** The introspection answer (RFC 7662 §2.2): `active` plus whatever claims the IdP adds. */
export type IntrospectionAnswer = Record<string, unknown>;

/**
 * Asks the provider's IdP about a token: the answer, or throws. An `IntrospectionRefusal`
 * means the IdP refused to look at this token (the token is bad); anything else means the IdP
 * could not be asked (unreachable, misconfigured client).
 */
export type Introspector = (p: ProviderRuntime, token: string) => Promise<{ issuer: string; answer: IntrospectionAnswer }>;

export class IntrospectionRefusal extends Error {}

/**
 * The userinfo response for a bearer token (whose subject the introspection gave), or null
 * when the provider has no userinfo endpoint. Throws an OidcError (see src/oidc/userinfo.ts).
 */
export type UserinfoFetcher = (p: ProviderRuntime, token: string, sub: string) => Promise<Record<string, unknown> | null>;

/** The real one: the provider's discovered userinfo endpoint. */
export const userinfoOfProvider: UserinfoFetcher = async (p, token, sub) => {
  const as = await userinfoEndpointOf(p.oidc);
  if (as === null) return null;
  const s = p.oidc.settings;
  return fetchUserinfo({ as, clientId: s.clientId, allowHttp: s.allowHttp, timeoutMs: (s.timeoutSeconds ?? 10) * 1000 }, token, sub);
};

/**
 * The token an Authorization header carries for Portcullis: a string (possibly empty: a
 * malformed credential of ours), or null when the header is absent or of another kind
 * (another scheme, Basic with another user name), which header authentication leaves alone.
 */
export function tokenOf(authorization: string | undefined): string | null {
  if (authorization === undefined) return null;
  const v = authorization.trim();
  const sp = v.indexOf(' ');
  const scheme = (sp === -1 ? v : v.slice(0, sp)).toLowerCase();
  const rest = sp === -1 ? '' : v.slice(sp + 1).trim();
  if (scheme === 'bearer') return rest;
  if (scheme !== 'basic' || rest === '') return null;
  let decoded: string;
  try {
    decoded = Buffer.from(rest, 'base64').toString('utf8');
  } catch {
    return null;
  }
  const colon = decoded.indexOf(':');
  if (colon === -1 || decoded.slice(0, colon) !== TOKEN_USERNAME) return null;
  return decoded.slice(colon + 1);
}

/** The cache key: every input of the decision, and the token only as a hash. */
export function cacheKey(p: ProviderRuntime, token: string): string {
  const digest = createHash('sha256').update(token).digest('base64url');
  return `${p.name}\u0000${p.config.issuer}\u0000${p.config.client_id}\u0000${digest}`;
}

/** A compact JWS (three base64url parts), as sent in X-authentik-jwt. */
export function isJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

/**
 * Decides on an introspection answer (pure; `now` in ms). `issuer` is the provider's issuer as
 * discovered. Accepted only when active, issued to this provider's client (`client_id`, or `aud`
 * is or contains it), unexpired (`exp` required), not before `nbf`, from this issuer (when `iss`
 * is given), not sender-constrained (`cnf`: no proof of possession is checked here), of type
 * Bearer (when `token_type` is given), and with a subject.
 */
export function evaluateIntrospection(
  p: ProviderRuntime,
  issuer: string,
  token: string,
  answer: IntrospectionAnswer,
  now: number,
  log?: Logger,
): HeaderAuthResult {
  if (answer.active !== true) return refused('inactive');
  const clientId = p.config.client_id;
  const aud = answer.aud;
  const forUs = answer.client_id === clientId || aud === clientId || (Array.isArray(aud) && aud.includes(clientId));
  if (!forUs) return refused('issued to another client');
  const exp = answer.exp;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return refused('no expiry');
  if (exp * 1000 <= now) return refused('expired');
  if (typeof answer.nbf === 'number' && answer.nbf * 1000 > now + 60_000) return refused('not yet valid');
  if (answer.iss !== undefined && answer.iss !== issuer) return refused('issued by another issuer');
  if (answer.cnf !== undefined) return refused('sender-constrained');
  if (answer.token_type !== undefined && String(answer.token_type).toLowerCase() !== 'bearer') return refused('not a bearer access token');
  const sub = answer.sub;
  if (typeof sub !== 'string' || sub === '') return refused('no subject');

  const { active: _active, ...rest } = answer;
  const claims = normalizeClaims({ ...rest, sub, iss: issuer }) as Claims;
  // RFC 7662's `username` when the IdP gives no preferred_username (authentik gives both).
  if (claims.preferred_username === undefined && typeof rest.username === 'string') claims.preferred_username = rest.username;
  const { settings: proxy, problems } = proxySettingsOf(claims, p.config);
  if (problems.length > 0) log?.warn({ provider: p.name, problems }, 'ak_proxy claims of an introspected token partly ignored');
  const session: SessionRecord = {
    id: 'header:' + createHash('sha256').update('portcullis header session\u0000').update(token).digest('base64url'),
    provider: p.name,
    userKey: userKeyOf(issuer, sub),
    createdAt: now,
    expiresAt: exp * 1000,
    claims,
    idToken: '',
    accessToken: isJwt(token) ? token : undefined,
    proxy,
  };
  return { kind: 'accepted', session };
}

function refused(reason: string): HeaderAuthResult {
  return { kind: 'refused', reason };
}

/** Signature algorithms whose keys a JWKS publishes: only these can be checked locally. */
const ASYMMETRIC_ALG = /^(?:(?:RS|PS|ES)(?:256|384|512)|ES256K|EdDSA|Ed25519|Ed448)$/;

function jwsHeaderOf(token: string): JWSHeaderParameters | null {
  if (!isJwt(token)) return null;
  try {
    return decodeProtectedHeader(token);
  } catch {
    return null;
  }
}

/**
 * The check before any introspection (`now` in ms): a refusal when the token cannot be valid,
 * or null when only the IdP can tell. With `access_token_format` auto, a compact JWS with an
 * asymmetric `alg` must verify against the provider's signing keys (an unknown key id makes them
 * be fetched again, boundedly), be unexpired and not before its `nbf`, name this client in
 * `client_id`, `azp` or `aud` when it names any, and come from the provider's issuer when it says;
 * other tokens go to the IdP. With `jwt` every other token is refused too; `opaque` checks nothing.
 * A JWT that cannot be checked (discovery or the JWKS unreachable) goes to the IdP as well.
 */
export async function checkLocally(p: ProviderRuntime, token: string, now: number): Promise<HeaderAuthResult | null> {
  const format = p.config.access_token_format;
  if (format === 'opaque') return null;
  const header = jwsHeaderOf(token);
  if (header === null || typeof header.alg !== 'string' || !ASYMMETRIC_ALG.test(header.alg)) {
    return format === 'jwt' ? refused('not a JWT signed by the provider') : null;
  }
  let payload: Record<string, unknown>;
  let issuer: string;
  try {
    issuer = (await p.oidc.ready()).serverMetadata().issuer;
    ({ payload } = await p.oidc.verifyJwt(token, { currentDate: new Date(now) }));
  } catch (err) {
    if (err instanceof jose.JWTExpired) return refused('expired');
    if (err instanceof jose.JWTClaimValidationFailed) return refused(`JWT claim ${err.claim}: ${err.reason}`);
    if (err instanceof jose.JOSEError) return refused(`JWT: ${err.code}`);
    return null;
  }
  const clientId = p.config.client_id;
  const aud = payload.aud;
  const named = [payload.client_id, payload.azp, ...(Array.isArray(aud) ? aud : [aud])].filter((v) => v !== undefined);
  if (named.length > 0 && !named.includes(clientId)) return refused('issued to another client');
  if (payload.iss !== undefined && payload.iss !== issuer) return refused('issued by another issuer');
  return null;
}

/**
 * The bound on one provider's introspection calls: at most `concurrency` in flight, and a token
 * bucket of `ratePerSecond` (as many again in a burst). A call over the bound is not made.
 */
export class IntrospectionBound {
  private inflight = 0;
  private tokens: number;
  private refilledAt: number;

  constructor(
    readonly concurrency: number,
    readonly ratePerSecond: number,
    private readonly now: () => number,
  ) {
    this.tokens = ratePerSecond;
    this.refilledAt = now();
  }

  /** Takes a slot for one call, or false when the bound is reached. */
  tryAcquire(): boolean {
    if (this.inflight >= this.concurrency) return false;
    const now = this.now();
    this.tokens = Math.min(this.ratePerSecond, this.tokens + ((now - this.refilledAt) * this.ratePerSecond) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    this.inflight++;
    return true;
  }

  release(): void {
    this.inflight--;
  }
}

/** The real introspector: openid-client's tokenIntrospection with the provider's configuration. */
export const introspectWithOpenidClient: Introspector = async (p, token) => {
  const config = await p.oidc.ready();
  const metadata = config.serverMetadata();
  // Without an introspection endpoint no token can ever be checked: refused, not "try again".
  if (!metadata.introspection_endpoint) throw new IntrospectionRefusal('the identity provider has no introspection endpoint');
  try {
    const answer = await client.tokenIntrospection(config, token, { token_type_hint: 'access_token' });
    return { issuer: metadata.issuer, answer: answer as IntrospectionAnswer };
  } catch (err) {
    // A 400 (invalid_request, unsupported_token_type…) is about the token; 401 (invalid_client)
    // and 5xx are about us or the IdP.
    if (err instanceof client.ResponseBodyError && err.status === 400) throw new IntrospectionRefusal(err.error);
    throw err;
  }
};

interface Entry {
  readonly result: HeaderAuthResult;
  /** Unix ms. */
  readonly until: number;
}

export interface HeaderAuthOptions {
  introspect?: Introspector;
  userinfo?: UserinfoFetcher;
  /** Clock (ms), for tests. */
  now?: () => number;
  maxEntries?: number;
  /** Metrics. */
  events?: AuthEvents;
}

export class HeaderAuthenticator {
  /** Accepted tokens: one SessionRecord per token while cached, so its id and createdAt — the key of the header stage's per-session cache — stay the same. */
  private readonly accepted = new Map<string, Entry>();
  /** Refused tokens and IdP failures, in their own map: a flood of bad tokens never evicts good ones. */
  private readonly refusedCache = new Map<string, Entry>();
  /** One introspection per key at a time. */
  private readonly inflight = new Map<string, Promise<HeaderAuthResult>>();
  /** Bumped by every purge: an introspection started before a sign-out is not cached. */
  private epoch = 0;
  private readonly introspect: Introspector;
  private readonly userinfo: UserinfoFetcher;
  private readonly now: () => number;
  private readonly maxEntries: number;
  private readonly events: AuthEvents;
  /** Per provider name, made on first use from the provider's config. */
  private readonly bounds = new Map<string, IntrospectionBound>();

  constructor(
    private readonly log: Logger,
    opts: HeaderAuthOptions = {},
  ) {
    this.introspect = opts.introspect ?? introspectWithOpenidClient;
    this.userinfo = opts.userinfo ?? userinfoOfProvider;
    this.now = opts.now ?? Date.now;
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.events = opts.events ?? NO_AUTH_EVENTS;
  }

  /** The decision on `token` for provider `p`: from the cache (synchronously), locally, or the IdP. */
  authenticate(p: ProviderRuntime, token: string): HeaderAuthResult | Promise<HeaderAuthResult> {
    if (token === '') return this.refusedLocally(p, refused('empty token'));
    if (token.length > MAX_TOKEN_LENGTH) return this.refusedLocally(p, refused('token too long'));
    const key = cacheKey(p, token);
    const now = this.now();
    const hit = this.lookup(key, now);
    if (hit !== undefined) {
      this.events.headerAuth(p.name, 'cache_hit');
      return hit;
    }
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      pending = this.check(p, token, key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    } else {
      this.events.headerAuth(p.name, 'cache_hit');
    }
    return pending;
  }

  /** Drops every cached acceptance of this user (sign-out); returns how many. */
  purgeUser(userKey: string): number {
    this.epoch++;
    let n = 0;
    for (const [key, entry] of this.accepted) {
      if (entry.result.kind === 'accepted' && entry.result.session.userKey === userKey) {
        this.accepted.delete(key);
        n++;
      }
    }
    return n;
  }

  /** Cached entries (accepted, refused), for tests and metrics. */
  get size(): { accepted: number; refused: number } {
    return { accepted: this.accepted.size, refused: this.refusedCache.size };
  }

  private lookup(key: string, now: number): HeaderAuthResult | undefined {
    const good = this.accepted.get(key);
    if (good !== undefined) {
      if (good.until > now) return good.result;
      this.accepted.delete(key);
    }
    const bad = this.refusedCache.get(key);
    if (bad !== undefined) {
      if (bad.until > now) return bad.result;
      this.refusedCache.delete(key);
    }
    return undefined;
  }

  /** Local refusal, bound, then the IdP. Local refusals and bound hits are not cached: they cost no call. */
  private async check(p: ProviderRuntime, token: string, key: string): Promise<HeaderAuthResult> {
    const epoch = this.epoch;
    const local = await checkLocally(p, token, this.now());
    if (local !== null) return this.refusedLocally(p, local);
    const bound = this.boundOf(p);
    if (!bound.tryAcquire()) {
      this.events.headerAuth(p.name, 'limited');
      return { kind: 'limited', reason: 'the introspection bound is reached' };
    }
    try {
      return await this.ask(p, token, key, epoch);
    } finally {
      bound.release();
    }
  }

  private refusedLocally(p: ProviderRuntime, result: HeaderAuthResult): HeaderAuthResult {
    this.events.headerAuth(p.name, 'local_refusal');
    if (result.kind === 'refused') this.log.debug({ provider: p.name, reason: result.reason }, 'bearer token refused without introspection');
    return result;
  }

  private boundOf(p: ProviderRuntime): IntrospectionBound {
    let bound = this.bounds.get(p.name);
    if (bound === undefined) {
      bound = new IntrospectionBound(p.config.introspection_concurrency, p.config.introspection_rate, this.now);
      this.bounds.set(p.name, bound);
    }
    return bound;
  }

  /** `epoch`: when the check began; a purge since then keeps the answer out of the cache. */
  private async ask(p: ProviderRuntime, token: string, key: string, epoch: number): Promise<HeaderAuthResult> {
    let result: HeaderAuthResult;
    this.events.headerAuth(p.name, 'introspection');
    try {
      const { issuer, answer } = await this.introspect(p, token);
      result = evaluateIntrospection(p, issuer, token, answer, this.now(), this.log);
      if (result.kind === 'accepted' && wantsUserinfo(p.config.fetch_userinfo ?? 'auto', answer)) {
        result = await this.withUserinfo(p, issuer, token, answer, result);
      }
    } catch (err) {
      if (err instanceof IntrospectionRefusal) {
        result = refused(`introspection refused: ${err.message}`);
      } else {
        this.log.error({ provider: p.name, err: (err as Error).message }, 'token introspection failed');
        result = { kind: 'unavailable', reason: (err as Error).message };
      }
    }
    const now = this.now();
    if (result.kind === 'accepted') {
      this.log.debug({ provider: p.name, user: userTag(result.session.userKey) }, 'bearer token accepted');
      if (epoch === this.epoch) {
        const until = Math.min(now + POSITIVE_TTL_MS, result.session.expiresAt);
        this.store(this.accepted, key, { result, until });
      }
    } else {
      if (result.kind === 'refused') this.log.debug({ provider: p.name, reason: result.reason }, 'bearer token refused');
      this.store(this.refusedCache, key, { result, until: now + (result.kind === 'refused' ? NEGATIVE_TTL_MS : UNAVAILABLE_TTL_MS) });
    }
    return result;
  }

  /**
   * An accepted token whose introspection answer lacks the user's claims: the userinfo response
   * (asked with the token itself) merged in, and the decision taken again on the merged claims.
   * Cached with the introspection result. Unreachable → unavailable (503); a userinfo response
   * about another subject → refused; a token that userinfo does not accept (e.g. without the
   * openid scope) → accepted with the introspection's claims only.
   */
  private async withUserinfo(p: ProviderRuntime, issuer: string, token: string, answer: IntrospectionAnswer, accepted: HeaderAuthResult & { kind: 'accepted' }): Promise<HeaderAuthResult> {
    let userinfo: Record<string, unknown> | null;
    try {
      userinfo = await this.userinfo(p, token, accepted.session.claims.sub);
    } catch (err) {
      const code = err instanceof OidcError ? err.code : 'oidc.userinfo_unreachable';
      if (code === 'oidc.userinfo_unreachable') {
        this.log.error({ provider: p.name, err: (err as Error).message }, 'userinfo of a bearer token failed');
        return { kind: 'unavailable', reason: 'userinfo endpoint unreachable' };
      }
      if (code === 'oidc.userinfo_subject_mismatch') return refused('userinfo about another subject');
      this.log.warn({ provider: p.name, code }, 'userinfo refused a bearer token that introspection accepted; its claims are not used');
      return accepted;
    }
    if (userinfo === null) return accepted;
    return evaluateIntrospection(p, issuer, token, mergeUserinfo(answer, userinfo), this.now(), this.log);
  }

  private store(map: Map<string, Entry>, key: string, entry: Entry): void {
    if (map.size >= this.maxEntries && !map.has(key)) {
      // A Map iterates in insertion order: expired entries at the front go, then, if still
      // full, the oldest one.
      const now = this.now();
      for (const [k, e] of map) {
        if (e.until > now) break;
        map.delete(k);
      }
      if (map.size >= this.maxEntries) map.delete(map.keys().next().value!);
    }
    map.delete(key);
    map.set(key, entry);
  }
}
