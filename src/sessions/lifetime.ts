// How long a session lives: the one place where its expiry is decided.
//
// A session never outlives the tokens it came from (as authentik's outpost, which sets the
// cookie's Max-Age from the token): its end is the earliest of the provider's
// access_token_validity, the access token's own end (its `exp` when it is a JWT, else the token
// response's `expires_in`) and the `exp` of the token forwarded as X-authentik-jwt. The session
// cookie's Max-Age follows the session. (A refresh that renews the tokens computes a new end here.)

export interface SessionTokens {
  /** `exp` of the ID token, unix seconds. */
  readonly idTokenExp?: number;
  /** `exp` of the access token when it is a JWT, unix seconds. */
  readonly accessTokenExp?: number;
  /** `expires_in` of the token response, seconds from `nowMs`. */
  readonly accessTokenExpiresIn?: number;
  /** Whether X-authentik-jwt carries the ID token (the access token is not a JWT). */
  readonly forwardsIdToken: boolean;
}

/** The session's end, unix milliseconds. */
export function sessionExpiresAt(nowMs: number, validitySeconds: number, tokens: SessionTokens): number {
  let end = nowMs + validitySeconds * 1000;
  const limit = (ms: number | undefined) => {
    if (ms !== undefined && Number.isFinite(ms) && ms < end) end = ms;
  };
  limit(tokens.accessTokenExp === undefined ? undefined : tokens.accessTokenExp * 1000);
  limit(tokens.accessTokenExpiresIn === undefined ? undefined : nowMs + tokens.accessTokenExpiresIn * 1000);
  if (tokens.forwardsIdToken) limit(tokens.idTokenExp === undefined ? undefined : tokens.idTokenExp * 1000);
  return end;
}

/** The session cookie's Max-Age for a session ending at `expiresAtMs`, whole seconds (never negative). */
export function cookieMaxAgeSeconds(nowMs: number, expiresAtMs: number): number {
  return Math.max(0, Math.floor((expiresAtMs - nowMs) / 1000));
}

/** `exp` of a JWT (unix seconds), read without verifying (the issuer's signature was checked where it matters). */
export function jwtExp(token: string | undefined): number | undefined {
  if (token === undefined) return undefined;
  const dot = token.indexOf('.');
  const dot2 = token.indexOf('.', dot + 1);
  if (dot === -1 || dot2 === -1) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(token.slice(dot + 1, dot2), 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp : undefined;
  } catch {
    return undefined;
  }
}
