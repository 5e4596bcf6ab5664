// The identity headers Portcullis puts on a forward-auth 200 answer, by name: what the forward
// stage and the generated reverse-proxy configurations (scripts/reverse-proxy-configs.ts) copy.

/**
 * The identity headers Portcullis puts on a 200 answer, in authentik's spelling (the header
 * stage emits them lower case; HTTP header names are case-insensitive). Basic-auth
 * `Authorization` and per-user `additionalHeaders` are not in this list: add them yourself if
 * you use them (see docs/forward-auth.md).
 */
export const IDENTITY_HEADERS = [
  'X-authentik-username',
  'X-authentik-groups',
  'X-authentik-entitlements',
  'X-authentik-email',
  'X-authentik-name',
  'X-authentik-uid',
  'X-authentik-jwt',
  'X-authentik-meta-jwks',
  'X-authentik-meta-outpost',
  'X-authentik-meta-provider',
  'X-authentik-meta-app',
  'X-authentik-meta-version',
] as const;
