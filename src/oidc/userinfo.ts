// Claims served only at the userinfo endpoint (OpenID Connect Core §5.3).
//
// A provider may put profile, email and group claims into the userinfo response only (LemonLDAP::NG
// does by default, oidc-provider with `conformIdTokenClaims`, others when the ID token must stay
// small). The provider setting `fetch_userinfo` says when Portcullis asks:
//   auto   (default) when the provider has a userinfo endpoint and the ID token (or a bearer
//          token's introspection answer) lacks one of the claims Portcullis uses itself:
//          preferred_username, email, name, groups;
//   always whenever the provider has a userinfo endpoint;
//   never  not at all.
// The response's `sub` must equal the ID token's (§5.3.2), else it is not used and the login
// fails. Merging: the protocol claims (iss, sub, aud, exp, nonce, …, and an introspection answer's
// client_id, scope, token_type, …) always come from the ID token / introspection answer; every
// other claim of the userinfo response is added, and replaces the ID token's value of the same
// name (userinfo is the provider's statement about the user at the time of the call).
import * as oauth from 'oauth4webapi';
import { OidcError } from './errors.js';
import type { OidcClient } from './client.js';

export type UserinfoMode = 'auto' | 'always' | 'never';

/** The claims Portcullis itself reads (identity headers, the usual access rules). */
export const USED_CLAIMS = ['preferred_username', 'email', 'name', 'groups'] as const;

/** Claims about the token or the authentication, never taken from a userinfo response. */
const PROTOCOL_CLAIMS = new Set([
  'iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'nonce', 'azp', 'auth_time', 'acr', 'amr', 'sid', 'at_hash', 'c_hash', 's_hash',
  // introspection (RFC 7662)
  'active', 'client_id', 'scope', 'token_type', 'cnf',
]);

/** Whether to call userinfo for this claim set (the caller knows whether there is an endpoint). */
export function wantsUserinfo(mode: UserinfoMode, claims: Record<string, unknown>): boolean {
  if (mode === 'never') return false;
  if (mode === 'always') return true;
  return USED_CLAIMS.some((name) => claims[name] === undefined && !(name === 'preferred_username' && claims.username !== undefined));
}

/** `base` (ID token claims or introspection answer) with the userinfo claims merged in. */
export function mergeUserinfo<T extends Record<string, unknown>>(base: T, userinfo: Record<string, unknown>): T {
  const out: Record<string, unknown> = { ...base };
  for (const [name, value] of Object.entries(userinfo)) {
    if (PROTOCOL_CLAIMS.has(name) || value === undefined) continue;
    out[name] = value;
  }
  return out as T;
}

export interface UserinfoRequest {
  as: oauth.AuthorizationServer;
  clientId: string;
  allowHttp: boolean;
  timeoutMs: number;
}

/**
 * The userinfo response for `accessToken`, whose `sub` must be `expectedSub`. Throws an
 * OidcError: `oidc.userinfo_unreachable` (503) when the provider could not be reached,
 * `oidc.userinfo_subject_mismatch` (502), `oidc.userinfo_refused` (502: the token was not
 * accepted there) or `oidc.userinfo_invalid` (502).
 */
export async function fetchUserinfo(req: UserinfoRequest, accessToken: string, expectedSub: string): Promise<Record<string, unknown>> {
  const c: oauth.Client = { client_id: req.clientId };
  let response: Response;
  try {
    response = await oauth.userInfoRequest(req.as, c, accessToken, {
      [oauth.allowInsecureRequests]: req.allowHttp,
      signal: AbortSignal.timeout(req.timeoutMs),
    });
  } catch (err) {
    throw new OidcError('oidc.userinfo_unreachable', `The identity provider's userinfo endpoint could not be reached: ${(err as Error).message}`, 503);
  }
  try {
    return (await oauth.processUserInfoResponse(req.as, c, expectedSub, response)) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof oauth.WWWAuthenticateChallengeError || (err instanceof oauth.OperationProcessingError && err.code === oauth.RESPONSE_IS_NOT_CONFORM)) {
      throw new OidcError('oidc.userinfo_refused', `The identity provider's userinfo endpoint refused the access token (HTTP ${response.status}).`, 502);
    }
    if (err instanceof oauth.OperationProcessingError && err.code === oauth.JSON_ATTRIBUTE_COMPARISON) {
      throw new OidcError('oidc.userinfo_subject_mismatch', "The identity provider's userinfo response is about another subject than the ID token; it was not used.", 502);
    }
    throw new OidcError('oidc.userinfo_invalid', `The identity provider's userinfo response could not be used: ${(err as Error).message}`, 502);
  }
}

/** The userinfo endpoint of a discovered provider, or null when it has none. */
export async function userinfoEndpointOf(oidc: OidcClient): Promise<oauth.AuthorizationServer | null> {
  const as = (await oidc.ready()).serverMetadata() as oauth.AuthorizationServer;
  return as.userinfo_endpoint ? as : null;
}

/**
 * The claims with the userinfo response merged in, when `mode` asks for it and the provider has
 * a userinfo endpoint; else the claims as they are. Throws what fetchUserinfo throws.
 */
export async function withUserinfo<T extends Record<string, unknown> & { sub: string }>(
  oidc: OidcClient,
  mode: UserinfoMode,
  claims: T,
  accessToken: string,
): Promise<{ claims: T; asked: boolean }> {
  if (!wantsUserinfo(mode, claims)) return { claims, asked: false };
  const as = await userinfoEndpointOf(oidc);
  if (as === null) return { claims, asked: false };
  const s = oidc.settings;
  const userinfo = await fetchUserinfo({ as, clientId: s.clientId, allowHttp: s.allowHttp, timeoutMs: (s.timeoutSeconds ?? 10) * 1000 }, accessToken, claims.sub);
  return { claims: mergeUserinfo(claims, userinfo), asked: true };
}
