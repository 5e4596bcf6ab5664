// `GET /outpost.goauthentik.io/userinfo`: who the signed-in user is, as JSON, for single-page
// applications behind Portcullis (as oauth2-proxy's /oauth2/userinfo). 401 without a session.
// Tokens are never part of the answer unless the provider sets `userinfo_include_token`.
import type { RequestContext, Respond } from '../../pipeline/contract.js';
import type { SessionRecord } from '../../sessions/store.js';
import { page } from '../../http/pages.js';
import { runtimeOf } from '../../config/provider.js';

export interface UserinfoAnswer {
  sub: string;
  preferred_username: string | null;
  name: string | null;
  email: string | null;
  groups: string[];
  entitlements: string[];
  provider: string;
  /** When the session ends at the latest (a refreshed session: session_max_age after login), unix seconds. */
  expires_at: number;
  /** The token X-authentik-jwt carries; only with `userinfo_include_token`. */
  token?: string;
}

export function userinfo(ctx: RequestContext): Respond {
  const session = ctx.session;
  if (session === null) {
    return page({
      status: 401,
      title: 'Not signed in',
      message: 'There is no session for this application.',
      requestId: ctx.requestId,
      wantsJson: true,
      code: 'auth.required',
      extraHeaders: { 'www-authenticate': 'Bearer realm="portcullis"' },
    });
  }
  const body = JSON.stringify(userinfoOf(session, runtimeOf(ctx.provider).config.userinfo_include_token === true));
  return { kind: 'respond', status: 200, headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }, body };
}

export function userinfoOf(session: SessionRecord, includeToken: boolean): UserinfoAnswer {
  const c = session.claims;
  const out: UserinfoAnswer = {
    sub: c.sub,
    preferred_username: stringOrNull(c.preferred_username),
    name: stringOrNull(c.name),
    email: stringOrNull(c.email),
    groups: stringList(c.groups),
    entitlements: stringList(c.entitlements),
    provider: session.provider,
    expires_at: Math.floor(session.expiresAt / 1000),
  };
  if (includeToken) out.token = session.accessToken ?? session.idToken;
  return out;
}

function stringOrNull(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** A list claim: an array's strings, or a single string as a one-element list. */
function stringList(v: unknown): string[] {
  if (typeof v === 'string') return v === '' ? [] : [v];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}
