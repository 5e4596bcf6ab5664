// The login flow of one outpost: /start, /callback and /sign_out (and their query-string
// signatures). Owned by the auth stage, which calls it when the context's action says so.
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import type { RequestContext, Respond } from '../../pipeline/contract.js';
import { runtimeOf, type ProviderRuntime } from '../../config/provider.js';
import type { Logger } from '../../pipeline/logger.js';
import { NO_AUTH_EVENTS, type AuthEvents } from '../../pipeline/tokens.js';
import { userKeyOf, userTag, type Claims, type SessionRecord, type SessionStore, type SessionProxySettings } from '../../sessions/store.js';
import { OidcError } from '../../oidc/client.js';
import { TokenEndpointError } from '../../oidc/token-errors.js';
import { withUserinfo } from '../../oidc/userinfo.js';
import { normalizeClaims } from '../../oidc/claims.js';
import { validateRedirect } from '../../http/redirects.js';
import { clearCookie, readCookie, setCookie } from '../../http/cookies.js';
import { page, sessionStoreUnavailable } from '../../http/pages.js';
import { signState, verifyState } from './state.js';
import { cookieMaxAgeSeconds, jwtExp, sessionExpiresAt } from '../../sessions/lifetime.js';
import { refreshableLogin } from './refresh.js';
import { MappingEvaluationError, type CompiledMappings } from '../../mappings/index.js';
import { compiledOf } from '../../config/compiled.js';
import { proxySettingsOf } from '../../oidc/proxy-claims.js';

const FLOW_TTL_SECONDS = 600;
/** The flow id of a sign-out's `state` (a login's is random): the two can never be swapped. */
const SIGNED_OUT_FLOW = 'signed-out';
/** In-flight logins kept per browser (several tabs may start one at once). */
const MAX_FLOWS = 5;

interface Flow {
  /** Flow id. */
  i: string;
  /** PKCE code verifier. */
  v: string;
  /** Nonce. */
  n: string;
  /** Expiry, unix seconds. */
  e: number;
}

export class LoginFlow {
  private readonly mappings = new Map<ProviderRuntime, CompiledMappings>();

  /** Providers whose guessable sid was already warned about (once per process). */
  private readonly warnedGuessableSid = new Set<string>();

  constructor(
    providers: readonly ProviderRuntime[],
    private readonly store: SessionStore,
    private readonly log: Logger,
    private readonly events: AuthEvents = NO_AUTH_EVENTS,
  ) {
    // Compiled once, here; evaluated once per login, never per request.
    for (const p of providers) this.mappings.set(p, compiledOf(p.config).mappings);
  }

  /**
   * The ID token's `sid`. One that is the user's own id or name can be guessed, and front-channel
   * logout (an unauthenticated GET) then lets anybody sign that user out: said once per provider
   * while its frontchannel_logout is `sid` (docs/security.md).
   */
  private sidOf(p: ProviderRuntime, claims: Record<string, unknown>): string | undefined {
    const sid = claims.sid;
    if (typeof sid !== 'string' || sid === '') return undefined;
    if (p.config.frontchannel_logout === 'sid' && !this.warnedGuessableSid.has(p.name)) {
      const own = [claims.sub, claims.preferred_username, claims.email, claims.nickname, claims.name];
      if (own.some((v) => typeof v === 'string' && v.toLowerCase() === sid.toLowerCase())) {
        this.warnedGuessableSid.add(p.name);
        this.log.warn(
          { provider: p.name },
          "the provider's sid is the user's own id or name: anybody can sign users out through front-channel logout; set frontchannel_logout: cookie (or off)",
        );
      }
    }
    return sid;
  }

  async start(ctx: RequestContext): Promise<Respond> {
    const p = runtimeOf(ctx.provider);
    const rd = redirectParam(ctx.target.query);
    const redirect = validateRedirect(rd, p.redirectPolicy) ?? p.externalBase + '/';
    return this.beginLogin(ctx, redirect);
  }

  /** Sends the browser to the IdP; the redirect must already be validated. */
  beginLogin(ctx: RequestContext, redirect: string): Promise<Respond> {
    return authorizationRedirect(ctx, redirect, this.log);
  }

  async callback(ctx: RequestContext): Promise<Respond> {
    let ok = false;
    try {
      const out = await this.completeLogin(ctx);
      // Only a stored session answers 302 (back to the original URL); every refusal is a 4xx/5xx page.
      ok = out.status === 302;
      return out;
    } finally {
      this.events.login(ctx.provider.name, ok);
    }
  }

  private async completeLogin(ctx: RequestContext): Promise<Respond> {
    const p = runtimeOf(ctx.provider);
    const params = new URLSearchParams(ctx.target.query);
    const now = Math.floor(Date.now() / 1000);
    const state = verifyState(params.get('state'), p.stateKey, p.name, now);
    if (!state) {
      return page({
        status: 400,
        title: 'Login link expired or invalid',
        message: 'This login response is not valid: it has expired, was altered, or belongs to another provider. Start again.',
        requestId: ctx.requestId,
        wantsJson: ctx.wantsJson,
        code: 'auth.state_invalid',
        link: { href: p.externalBase + '/', text: 'Start again' },
      });
    }
    const flows = this.readFlows(ctx, now);
    const flow = flows.find((f) => f.i === state.i);
    // The flow is used up whatever happens next: a replay finds nothing.
    const rest = flows.filter((f) => f !== flow);
    addCookie(
      ctx,
      rest.length > 0
        ? setCookie(p.flowCookieName, encodeURIComponent(p.flowCodec.encode({ f: rest })), FLOW_TTL_SECONDS, p.cookieSuffix)
        : clearCookie(p.flowCookieName, p.cookieSuffix),
    );
    if (!flow) {
      return page({
        status: 400,
        title: 'Login not started in this browser',
        message: 'This login response does not belong to a login started in this browser, or it was already used. Start again.',
        requestId: ctx.requestId,
        wantsJson: ctx.wantsJson,
        code: 'auth.state_not_bound',
        link: { href: p.externalBase + '/', text: 'Start again' },
      });
    }
    let login;
    let userClaims: Claims;
    try {
      login = await p.oidc.exchange(params, { redirectUri: p.callbackUrl, expectedState: params.get('state')!, codeVerifier: flow.v, nonce: flow.n });
      // Claims served only at userinfo are merged in, then every claim takes its one shape.
      userClaims = normalizeClaims((await withUserinfo(p.oidc, p.config.fetch_userinfo ?? 'auto', login.claims, login.bearerToken)).claims);
    } catch (err) {
      return this.failure(ctx, err);
    }

    const evaluated = this.sessionClaims(ctx, userClaims);
    if (evaluated instanceof MappingEvaluationError) {
      this.log.error({ provider: p.name, mapping: evaluated.mapping, detail: evaluated.detail, reqId: ctx.requestId }, 'scope mapping failed; login refused');
      return page({
        status: 500,
        title: 'Login could not be completed',
        message: `The scope mapping "${evaluated.mapping}" of this application failed, so you were not signed in. Please tell the administrator.`,
        requestId: ctx.requestId,
        wantsJson: ctx.wantsJson,
        code: 'auth.mapping_failed',
      });
    }
    const { claims, proxy } = evaluated;
    await this.recordHeaderNames(ctx, proxy);
    const nowMs = Date.now();
    const tokensEnd = sessionExpiresAt(nowMs, p.sessionTtlSeconds, {
      idTokenExp: typeof login.claims.exp === 'number' ? login.claims.exp : undefined,
      accessTokenExp: jwtExp(login.accessToken),
      accessTokenExpiresIn: login.accessTokenExpiresIn,
      forwardsIdToken: login.accessToken === undefined,
    });
    const record: SessionRecord = {
      id: randomBytes(32).toString('base64url'),
      provider: p.name,
      userKey: userKeyOf(login.claims.iss, login.claims.sub),
      createdAt: nowMs,
      expiresAt: tokensEnd,
      claims: claims as SessionRecord['claims'],
      idToken: login.idToken,
      accessToken: login.accessToken,
      proxy,
      // The IdP session: back- and front-channel logout name it.
      // The ID token's sid only; the user's names as merged from userinfo too.
      sid: this.sidOf(p, { ...userClaims, sid: login.claims.sid }),
      // With a refresh token: lives up to session_max_age, refreshed before its tokens expire.
      ...refreshableLogin(p, login.refreshToken, tokensEnd, nowMs),
    };
    try {
      await this.store.put(record);
    } catch (err) {
      this.log.error({ provider: p.name, err: (err as Error).message, reqId: ctx.requestId }, 'login completed at the IdP but the session could not be stored');
      return sessionStoreUnavailable(ctx.requestId, ctx.wantsJson, 'You signed in, but Portcullis cannot reach its session store right now to keep the session. Try again in a moment.');
    }
    addCookie(ctx, setCookie(p.cookieName, encodeURIComponent(p.sessionCodec.encode({ s: record.id })), cookieMaxAgeSeconds(nowMs, record.expiresAt), p.cookieSuffix));
    this.log.info({ provider: p.name, user: userTag(record.userKey), reqId: ctx.requestId }, 'login completed');
    return { kind: 'respond', status: 302, headers: { location: state.r, 'cache-control': 'no-store' } };
  }

  /**
   * Records the additionalHeaders names a session is about to carry, before it exists (at login
   * and at refresh): every request of the outpost strips client copies of them from now on.
   */
  async recordHeaderNames(ctx: RequestContext, proxy: SessionProxySettings): Promise<void> {
    const p = runtimeOf(ctx.provider);
    const headerNames = proxy.additionalHeaders!.map(([n]) => n);
    if (headerNames.length === 0) return;
    const undeclared = headerNames.filter((n) => !p.additionalHeaderNames.has(n));
    if (undeclared.length > 0) {
      // Until this login, a client could have sent these names itself and the upstream believed them.
      this.log.warn(
        { provider: p.name, headers: undeclared, reqId: ctx.requestId },
        'additionalHeaders names not declared in additional_header_names; client copies are stripped from now on, declare them to strip them from the start',
      );
    }
    await this.store.recordHeaderNames(headerNames);
  }

  /**
   * The claims a session keeps — the provider's claims with the scope mappings merged in — and
   * what its ak_proxy claims decide. At login, and again at each refresh.
   */
  sessionClaims(ctx: RequestContext, raw: Record<string, unknown>): { claims: Record<string, unknown>; proxy: SessionProxySettings } | MappingEvaluationError {
    const p = runtimeOf(ctx.provider);
    let claims: Record<string, unknown>;
    try {
      claims = this.mappings.get(p)!.evaluate({
        claims: raw,
        request: { host: ctx.target.host, path: ctx.target.path, headers: plainHeaders(ctx.headers) },
        provider: { name: p.name, slug: p.slug },
      });
    } catch (err) {
      if (err instanceof MappingEvaluationError) return err;
      throw err;
    }
    const { settings: proxy, problems } = proxySettingsOf(claims, p.config);
    if (problems.length > 0) {
      this.log.warn({ provider: p.name, problems, reqId: ctx.requestId }, 'ak_proxy claims partly ignored');
    }
    return { claims, proxy };
  }

  async signOut(ctx: RequestContext): Promise<Respond> {
    const p = runtimeOf(ctx.provider);
    const session = ctx.session;
    const back = this.appAfterSignOut(ctx);
    if (!session) {
      if (readCookie(ctx.headers.cookie, p.cookieName) !== undefined) addCookie(ctx, clearCookie(p.cookieName, p.cookieSuffix));
      return signedOutPage(ctx, back);
    }
    let ended: number;
    try {
      ended = await this.store.deleteUser(session.userKey);
    } catch (err) {
      this.log.error({ provider: p.name, err: (err as Error).message, reqId: ctx.requestId }, 'sign-out failed: the session store could not record it');
      // Nothing was ended: the cookie stays, so that the user can sign out again, and the page says so.
      return sessionStoreUnavailable(
        ctx.requestId,
        ctx.wantsJson,
        'Portcullis cannot record changes in its session store right now, so your sessions could not be ended: you are still signed in. Try signing out again in a moment.',
      );
    }
    if (readCookie(ctx.headers.cookie, p.cookieName) !== undefined) addCookie(ctx, clearCookie(p.cookieName, p.cookieSuffix));
    this.log.info({ provider: p.name, user: userTag(session.userKey), sessions: ended, reqId: ctx.requestId }, 'signed out: all sessions of the user ended');
    this.events.signOut(p.name);
    // The signed-out page learns which application to offer "Sign in again" for from a signed
    // `state`, which the IdP hands back with the post-logout redirect (RP-Initiated Logout §3).
    const state = p.postLogoutIsOwnPage ? signState({ i: SIGNED_OUT_FLOW, r: back, e: Math.floor(Date.now() / 1000) + FLOW_TTL_SECONDS, p: p.name }, p.stateKey) : undefined;
    let location = p.postLogoutIsOwnPage ? `${p.postLogoutUrl}?state=${encodeURIComponent(state!)}` : p.postLogoutUrl;
    try {
      await p.oidc.ready();
      location = p.oidc.endSessionUrl({ idTokenHint: session.idToken, postLogoutRedirectUri: p.postLogoutUrl, state })?.href ?? location;
    } catch {
      // The IdP is unreachable: the outpost's sessions are ended all the same.
    }
    return { kind: 'respond', status: 302, headers: { location, 'cache-control': 'no-store' } };
  }

  /** `/outpost.goauthentik.io/signed_out`: where the IdP sends the browser after sign-out. */
  signedOut(ctx: RequestContext): Respond {
    const p = runtimeOf(ctx.provider);
    const state = verifyState(new URLSearchParams(ctx.target.query).get('state'), p.stateKey, p.name);
    const back = state !== null && state.i === SIGNED_OUT_FLOW ? validateRedirect(state.r, p.redirectPolicy) : null;
    return signedOutPage(ctx, back ?? p.externalBase + '/');
  }

  /**
   * The application to sign in to again: `rd` when valid, else the root of the host the sign-out
   * was requested on (in forward_domain mode an application host, not the auth host), when the
   * redirect policy accepts it, else external_host.
   */
  private appAfterSignOut(ctx: RequestContext): string {
    const p = runtimeOf(ctx.provider);
    return (
      validateRedirect(redirectParam(ctx.target.query), p.redirectPolicy) ??
      validateRedirect(`${ctx.target.scheme}://${ctx.target.host}/`, p.redirectPolicy) ??
      p.externalBase + '/'
    );
  }

  private readFlows(ctx: RequestContext, now: number): Flow[] {
    return readFlows(ctx, now);
  }

  private failure(ctx: RequestContext, err: unknown): Respond {
    return loginFailure(ctx, err, this.log);
  }
}

/**
 * The 302 to the IdP's authorization endpoint that begins a login (PKCE, nonce, signed state),
 * with the flow cookie that binds it to this browser set on the same answer. Used by /start and
 * by the Traefik, Caddy and Envoy challenges, which go straight to the IdP as authentik's do.
 * `redirect` must already be validated.
 */
export async function authorizationRedirect(ctx: RequestContext, redirect: string, log: Logger): Promise<Respond> {
  const p = runtimeOf(ctx.provider);
  const now = Math.floor(Date.now() / 1000);
  const flow: Flow = { i: randomBytes(16).toString('base64url'), v: client.randomPKCECodeVerifier(), n: client.randomNonce(), e: now + FLOW_TTL_SECONDS };
  const state = signState({ i: flow.i, r: redirect, e: flow.e, p: p.name }, p.stateKey);
  let url: URL;
  try {
    url = await p.oidc.authorizationUrl({ redirectUri: p.callbackUrl, state, nonce: flow.n, codeVerifier: flow.v });
  } catch (err) {
    return loginFailure(ctx, err, log);
  }
  const flows = readFlows(ctx, now).filter((f) => f.i !== flow.i);
  flows.push(flow);
  const kept = flows.slice(-MAX_FLOWS);
  addCookie(ctx, setCookie(p.flowCookieName, encodeURIComponent(p.flowCodec.encode({ f: kept })), FLOW_TTL_SECONDS, p.cookieSuffix));
  return { kind: 'respond', status: 302, headers: { location: url.href, 'cache-control': 'no-store' } };
}

function readFlows(ctx: RequestContext, now: number): Flow[] {
  const p = runtimeOf(ctx.provider);
  const raw = readCookie(ctx.headers.cookie, p.flowCookieName);
  if (raw === undefined) return [];
  const data = p.flowCodec.decode(safeDecode(raw));
  const list = data && Array.isArray(data.f) ? (data.f as Flow[]) : [];
  return list.filter((f) => f && typeof f.i === 'string' && typeof f.v === 'string' && typeof f.n === 'string' && typeof f.e === 'number' && f.e > now);
}

function loginFailure(ctx: RequestContext, err: unknown, log: Logger): Respond {
  if (err instanceof TokenEndpointError) {
    // The provider's own words go to the log always, and to the page only for an administrator
    // (a signed-in user whose ak_proxy claims say is_superuser, as authentik decides).
    const admin = ctx.session?.claims.ak_proxy?.is_superuser === true;
    log.warn(
      {
        provider: ctx.provider.name,
        code: err.code,
        providerError: err.providerError,
        providerDescription: err.providerDescription,
        providerStatus: err.providerStatus,
        requestId: ctx.requestId,
      },
      'login failed at the token endpoint',
    );
    return page({
      status: err.status,
      title: admin ? `The identity provider refused the code exchange${err.providerError ? ` (${err.providerError})` : ''}` : 'Login could not be completed',
      message: admin ? err.adminMessage : err.message,
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: err.code,
      link: { href: ctx.provider.externalBase + '/', text: 'Try again' },
    });
  }
  if (err instanceof OidcError) {
    log.warn({ provider: ctx.provider.name, code: err.code, detail: err.message, reqId: ctx.requestId }, 'login failed');
    return page({
      status: err.status,
      title: 'Login could not be completed',
      message: err.message,
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: err.code,
      link: { href: ctx.provider.externalBase + '/', text: 'Try again' },
    });
  }
  throw err;
}

/**
 * The `rd` parameter. nginx cannot URL-encode, so its `error_page` redirect sends
 * `start?rd=$scheme://$http_host$request_uri` with the original query unencoded: when `rd` is
 * the first parameter and holds a literal URL, the whole rest of the query belongs to it.
 */
export function redirectParam(query: string): string | null {
  if (query.startsWith('rd=http://') || query.startsWith('rd=https://')) return query.slice(3);
  return new URLSearchParams(query).get('rd');
}

/** "You are signed out", with a link to sign in to the application again. */
export function signedOutPage(ctx: RequestContext, back: string): Respond {
  return page({
    status: 200,
    title: 'You are signed out',
    message: `You are signed out of ${ctx.provider.appName}.`,
    requestId: ctx.requestId,
    wantsJson: ctx.wantsJson,
    code: 'auth.signed_out',
    link: { href: back, text: 'Sign in again' },
  });
}

export function addCookie(ctx: RequestContext, cookie: string): void {
  if (ctx.setCookies === null) ctx.setCookies = [cookie];
  else ctx.setCookies.push(cookie);
}

export function safeDecode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return '';
  }
}

function plainHeaders(h: RequestContext['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k === 'cookie' || k === 'authorization') continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}
