// The allowlist stage: lets anonymous requests through on unauthenticated paths
// (skip_path_regex, RE2, compiled at config load), and challenges the rest — a redirect to the
// login start for browsers, 401 for API clients and nginx; a refused bearer token gets 401
// `invalid_token` and an unreachable IdP 503, in every entry. Patterns see the normalized path
// (proxy, forward_single) or `scheme://host/path` (forward_domain); never the query string.
import RE2 from 're2';
import { CONTINUE, type RequestContext, type Stage, type StageOutcome, type Respond } from '../../pipeline/contract.js';
import type { Logger } from '../../pipeline/logger.js';
import { validateRedirect } from '../../http/redirects.js';
import { authorizationRedirect } from '../auth/login.js';
import { OUTPOST_PREFIX, runtimeOf, type ProviderRuntime } from '../../config/provider.js';
import { skipPatternLines } from '../../config/load.js';
import { page, sessionStoreUnavailable } from '../../http/pages.js';

export interface CompiledAllowlist {
  /**
   * All lines as one RE2 alternation `(?:l1)|(?:l2)|…`: one pass over the subject instead of one
   * per line (100 lines: ~60 ns instead of ~3 µs). Each line keeps its own flags and anchors,
   * since RE2 scopes `(?i)`-style flags to the enclosing group. Null when there are no lines.
   */
  readonly pattern: RE2 | null;
  /**
   * Lines that cannot share the alternation: `\Q` quotes up to `\E` or the end of the pattern,
   * so an unterminated one would swallow the group's `)`. They are tested one by one.
   */
  readonly separate: readonly RE2[];
  /** forward_domain matches the URL without its query; the other modes the path. */
  readonly matchUrl: boolean;
}

export function compileAllowlist(p: ProviderRuntime): CompiledAllowlist {
  const lines = skipPatternLines(p.config.skip_path_regex).map(({ pattern }) => pattern);
  const grouped = lines.filter((l) => !l.includes('\\Q'));
  const separate = lines.filter((l) => l.includes('\\Q')).map((l) => new RE2(l));
  return {
    pattern: grouped.length === 0 ? null : new RE2(grouped.map((l) => `(?:${l})`).join('|')),
    separate,
    matchUrl: p.mode === 'forward_domain',
  };
}

export function isAllowlisted(list: CompiledAllowlist, ctx: RequestContext): boolean {
  const separate = list.separate;
  if (list.pattern === null && separate.length === 0) return false;
  const t = ctx.target;
  const subject = list.matchUrl ? `${t.scheme}://${t.host}${t.path}` : t.path;
  if (list.pattern !== null && list.pattern.test(subject)) return true;
  for (let i = 0; i < separate.length; i++) if (separate[i]!.test(subject)) return true;
  return false;
}

export class AllowlistStage implements Stage {
  readonly name = 'allowlist';
  private readonly lists: CompiledAllowlist[];
  private readonly providers: readonly ProviderRuntime[];

  constructor(
    providers: readonly ProviderRuntime[],
    private readonly log: Logger,
  ) {
    this.providers = providers;
    this.lists = providers.map(compileAllowlist);
  }

  run(ctx: RequestContext): StageOutcome | Promise<StageOutcome> {
    if (ctx.session !== null) return CONTINUE;
    if (isAllowlisted(this.lists[ctx.provider.index]!, ctx)) {
      ctx.allowlisted = true;
      return CONTINUE;
    }
    const answer = challenge(ctx);
    if (answer !== LOGIN_AT_IDP) return answer;
    // Traefik, Caddy and Envoy pass a challenge's answer to the browser as it is (cookies
    // included): the login begins here, at the IdP, as authentik's outpost does.
    const t = ctx.target;
    const original = `${t.scheme}://${t.host}${t.path}${t.query ? '?' + t.query : ''}`;
    const p = this.providers[ctx.provider.index]!;
    const redirect = validateRedirect(original, p.redirectPolicy) ?? p.externalBase + '/';
    return authorizationRedirect(ctx, redirect, this.log);
  }
}

/** What challenge() answers for Traefik, Caddy and Envoy: the stage sends the browser to the IdP. */
export const LOGIN_AT_IDP: Respond = Object.freeze({ kind: 'respond', status: 302 });

/**
 * What an anonymous request on a protected path gets, by entry: in proxy mode a redirect to the
 * outpost's start (401 for API clients), for nginx 401 (its configuration redirects), for Traefik,
 * Caddy and Envoy LOGIN_AT_IDP — the stage answers with the IdP's authorization URL.
 */
export function challenge(ctx: RequestContext): Respond {
  const p = runtimeOf(ctx.provider);
  const t = ctx.target;
  // The request named a session the store could not be asked about: a login redirect would only
  // come back here (the session may well be alive).
  if (ctx.sessionUnavailable) return sessionStoreUnavailable(ctx.requestId, ctx.wantsJson);
  // A token was presented and could not be accepted: never a login redirect, never the upstream.
  if (ctx.headerAuth === 'refused') {
    return page({
      status: 401,
      title: 'Invalid access token',
      message: 'The access token in the Authorization header is not valid for this application: it is unknown, inactive, expired, or was issued to another application.',
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: 'auth.invalid_token',
      extraHeaders: { 'www-authenticate': 'Bearer realm="portcullis", error="invalid_token"' },
    });
  }
  if (ctx.headerAuth === 'unavailable') {
    return page({
      status: 503,
      title: 'Identity provider unavailable',
      message: 'The identity provider could not be asked to check the access token; try again shortly.',
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: 'auth.idp_unavailable',
      extraHeaders: { 'retry-after': '5' },
    });
  }
  if (ctx.headerAuth === 'limited') {
    // The bound that keeps Portcullis from flooding the IdP: refilled within a second.
    return page({
      status: 503,
      title: 'Too many token checks',
      message: 'Too many access tokens are being checked with the identity provider right now; try again in a moment.',
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: 'auth.introspection_limited',
      extraHeaders: { 'retry-after': '1' },
    });
  }
  if (ctx.entry === 'nginx') {
    // nginx turns the 401 into a redirect to /start (error_page 401 = …) itself.
    return { kind: 'respond', status: 401, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, body: 'unauthorized request' };
  }
  // Traefik, Caddy, Envoy: straight to the IdP (the stage builds that answer).
  if (ctx.entry !== 'proxy') return LOGIN_AT_IDP;
  if (ctx.wantsJson) {
    return page({ status: 401, title: 'Authentication required', message: 'Sign in first; API requests are not redirected.', requestId: ctx.requestId, wantsJson: true, code: 'auth.required', extraHeaders: { 'www-authenticate': 'Bearer realm="portcullis"' } });
  }
  if (p.config.intercept_header_auth && ctx.headers.authorization !== undefined) {
    // An Authorization header of another kind (not Bearer, not Basic goauthentik.io/token).
    return page({
      status: 401,
      title: 'Unauthenticated',
      message: "The request carries an Authorization header that is not a bearer token and 'intercept_header_auth' is on, so no login redirect is performed.",
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: 'auth.header_auth_unsupported',
    });
  }
  const original = `${t.scheme}://${t.host}${t.path}${t.query ? '?' + t.query : ''}`;
  const location = `${p.externalBase}${OUTPOST_PREFIX}/start?rd=${encodeURIComponent(original)}`;
  return { kind: 'respond', status: 302, headers: { location, 'cache-control': 'no-store' } };
}
