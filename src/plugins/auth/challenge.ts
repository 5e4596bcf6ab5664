// Challenges: what a request that needs a user and has none is answered — in one place, by the
// plugin that owns sign-in. A stage says only CHALLENGE ("sign in first"); the request's exit
// picks the form its caller understands:
//  - the proxy (`toLogin`): a redirect to the outpost's start, 401 for API clients;
//  - nginx (`NGINX_UNAUTHORIZED`): 401, which its configuration turns into the redirect;
//  - Traefik, Caddy, Envoy (`atIdp`): the IdP's authorization URL, which they pass to the browser
//    as it is (cookies included) — the login begins here, as authentik's outpost does.
// Before any of them, the auth stage's verdict (`verdictAnswer`): a session store that could not
// be asked, or a bearer token that was refused or could not be checked, is never a login redirect.
import type { RequestContext, Respond } from '../../pipeline/contract.js';
import type { Logger } from '../../pipeline/logger.js';
import { OUTPOST_PREFIX, runtimeOf } from '../../config/provider.js';
import { page, sessionStoreUnavailable } from '../../http/pages.js';
import { validateRedirect } from '../../http/redirects.js';
import { authorizationRedirect } from './login.js';

/** The auth stage's verdict as an answer, or null when it leaves the challenge to the exit. */
export function verdictAnswer(ctx: RequestContext): Respond | null {
  // The request named a session the store could not be asked about: a login redirect would only
  // come back here (the session may well be alive).
  if (ctx.sessionUnavailable) return sessionStoreUnavailable(ctx.requestId, ctx.wantsJson);
  switch (ctx.headerAuth) {
    case null:
    case 'accepted':
      return null;
    // A token was presented and could not be accepted: never a login redirect, never the upstream.
    case 'refused':
      return page({
        status: 401,
        title: 'Invalid access token',
        message: 'The access token in the Authorization header is not valid for this application: it is unknown, inactive, expired, or was issued to another application.',
        requestId: ctx.requestId,
        wantsJson: ctx.wantsJson,
        code: 'auth.invalid_token',
        extraHeaders: { 'www-authenticate': 'Bearer realm="portcullis", error="invalid_token"' },
      });
    case 'unavailable':
      return page({
        status: 503,
        title: 'Identity provider unavailable',
        message: 'The identity provider could not be asked to check the access token; try again shortly.',
        requestId: ctx.requestId,
        wantsJson: ctx.wantsJson,
        code: 'auth.idp_unavailable',
        extraHeaders: { 'retry-after': '5' },
      });
    case 'limited':
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
}

/** nginx's challenge: its configuration turns the 401 into a redirect to /start (error_page 401 = …). */
export const NGINX_UNAUTHORIZED: Respond = Object.freeze({
  kind: 'respond',
  status: 401,
  headers: Object.freeze({ 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }),
  body: 'unauthorized request',
});

/** A proxied request's challenge: to the outpost's start (back here after login), 401 for API clients. */
export function toLogin(ctx: RequestContext): Respond {
  const verdict = verdictAnswer(ctx);
  if (verdict !== null) return verdict;
  const p = runtimeOf(ctx.provider);
  const t = ctx.target;
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

/** Traefik's, Caddy's and Envoy's challenge: straight to the IdP, back to the original URL after. */
export function atIdp(ctx: RequestContext, log: Logger): Respond | Promise<Respond> {
  const verdict = verdictAnswer(ctx);
  if (verdict !== null) return verdict;
  const t = ctx.target;
  const original = `${t.scheme}://${t.host}${t.path}${t.query ? '?' + t.query : ''}`;
  const redirect = validateRedirect(original, runtimeOf(ctx.provider).redirectPolicy) ?? ctx.provider.externalBase + '/';
  return authorizationRedirect(ctx, redirect, log);
}

/** nginx's challenge, after the verdict. */
export function forNginx(ctx: RequestContext): Respond {
  return verdictAnswer(ctx) ?? NGINX_UNAUTHORIZED;
}
