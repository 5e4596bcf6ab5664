// The session registry: where logged-in sessions live between requests.
//
// The browser's cookie carries only an encrypted, authenticated session id; the session itself
// (claims, tokens) lives in a SessionStore. That keeps cookies small whatever the size of the
// user's group list, and lets sign-out end every session of a user on the outpost, across
// providers and devices. The embedded store keeps them in SQLite on disk so that sessions survive
// a restart and deleted sessions stay deleted; a shared store (Redis) implements the same interface.
//
// A store may return one object per stored version of a session, or a new one on every read: the
// stages' per-session caches are keyed by the record's id and issue times (per-session-cache.ts),
// so they hit with every store.

import { createHash } from 'node:crypto';

/** Claims as stored: the ID token's claims after scope mappings were merged in at login. */
export type Claims = Record<string, unknown> & {
  sub: string;
  iss?: string;
  preferred_username?: string;
  email?: string;
  name?: string;
  groups?: unknown;
  entitlements?: unknown;
  ak_proxy?: AkProxyClaims | null;
};

export interface AkProxyClaims {
  user_attributes?: Record<string, unknown> & { additionalHeaders?: Record<string, unknown> | null };
  backend_override?: string;
  host_header?: string;
  is_superuser?: boolean;
}

export interface SessionRecord {
  /** Random id (base64url, 32 bytes); the cookie carries it encrypted. */
  readonly id: string;
  /** The provider (by name) the session was created for. */
  readonly provider: string;
  /** Identifies the user across providers of the outpost: issuer + subject. */
  readonly userKey: string;
  /** Unix milliseconds. */
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly claims: Claims;
  /** Raw ID token: X-authentik-jwt (when the access token is not a JWT) and id_token_hint. */
  readonly idToken: string;
  /** The access token when it is a JWT (authentik issues JWTs), else undefined. */
  readonly accessToken?: string;
  /** What the ak_proxy claims decided at login, validated once (zero evaluations per request). */
  readonly proxy?: SessionProxySettings;
  /** The IdP's session id (the ID token's `sid`): OpenID Connect back- and front-channel logout name it. */
  readonly sid?: string;
  /** The refresh token, when the provider issued one: the session is then refreshed (docs/sessions.md). */
  readonly refreshToken?: string;
  /** Unix ms: when the current tokens were obtained (login or last refresh). */
  readonly tokensIssuedAt?: number;
  /**
   * Unix ms: when the current tokens stop being usable (the token X-authentik-jwt carries, the
   * access token, access_token_validity). Set only on refreshable sessions; before it, the session is
   * refreshed (see src/plugins/auth/refresh.ts).
   */
  readonly tokensExpireAt?: number;
}

export interface SessionProxySettings {
  /** `scheme://host[:port]` of a valid backend_override. */
  readonly backendOrigin?: string;
  /** Host of the override (the default upstream Host header for it). */
  readonly backendHost?: string;
  /** ak_proxy.host_header. */
  readonly hostHeader?: string;
  /** Validated additionalHeaders, names lower-cased. */
  readonly additionalHeaders?: ReadonlyArray<readonly [string, string]>;
}

export interface SessionStore {
  /** Opens the store (the embedded store creates or migrates its database). */
  open(): Promise<void>;
  close(): Promise<void>;
  /**
   * A live (unexpired) session, or undefined. Sync for the embedded store; may be a promise.
   * Throws (rejects) SessionStoreError when the store cannot be read.
   */
  get(id: string): SessionRecord | undefined | Promise<SessionRecord | undefined>;
  /**
   * Stores a session; resolves once it is durable. When the user then has more sessions than the
   * store's per-user cap, the oldest are ended in the same step. Rejects SessionStoreError when the
   * session could not be recorded (nothing is then stored).
   */
  put(record: SessionRecord): Promise<void>;
  delete(id: string): Promise<void>;
  /**
   * Ends every session of this user on the outpost; returns how many were ended. Resolves only
   * once the deletion is durable; rejects SessionStoreError (and ends nothing) when it is not.
   */
  deleteUser(userKey: string): Promise<number>;
  /** How many sessions are live (metrics, tests). */
  size(): number | Promise<number>;

  // --- additionalHeaders names (issue 8, item 1) -------------------------------------------
  // Every header name additionalHeaders produced at any login on this outpost is stripped from
  // every client request, so the set lives with the sessions: it survives a restart and is
  // shared by the replicas of a shared store. Names only grow; they are lower case.

  /** Adds names seen at a login; resolves once they are durable (before the session cookie is sent). */
  recordHeaderNames(names: readonly string[]): Promise<void>;
  /**
   * Every name recorded so far that this process knows of. The same Set object for the store's
   * life (updated in place), so callers may keep it. Names recorded by another replica arrive
   * within the store's refresh interval (HEADER_NAMES_REFRESH_MS), or sooner when this process
   * loads a session that carries them.
   */
  headerNames(): ReadonlySet<string>;
  // Logout from the identity provider, and refresh. Every store implements these across all the
  // processes that share it (a shared store: across replicas).

  /** Ends the sessions of `provider` that belong to the IdP session `sid`; returns how many. */
  deleteBySid(provider: string, sid: string): Promise<number>;
  /** Ends every session of `provider` (only) of this user; returns how many. */
  deleteProviderUser(provider: string, userKey: string): Promise<number>;
  /**
   * Records `key` until `expiresAt` (unix ms). True when it was not recorded yet; false while it
   * is (a replayed logout token's jti).
   */
  recordOnce(key: string, expiresAt: number): Promise<boolean>;
  /** Takes the refresh lock of session `id` for `ttlMs`: a token to release it with, or null when held. */
  lockRefresh(id: string, ttlMs: number): Promise<string | null>;
  /** Releases the lock if `token` still holds it. */
  unlockRefresh(id: string, token: string): Promise<void>;
}

/** How often a shared store re-reads the names other replicas recorded. */
export const HEADER_NAMES_REFRESH_MS = 2_000;

/** The default cap on live sessions per user (`session_store.max_sessions_per_user`). */
export const DEFAULT_MAX_SESSIONS_PER_USER = 100;

/**
 * A store call failed: the store could not be read or could not record a change (disk full,
 * read-only, locked, unreachable). The auth stage answers it with a 503 page. The message names
 * the store and the reason, never command arguments or tokens.
 */
export class SessionStoreError extends Error {
  override readonly name = 'SessionStoreError';
}

/** sha256(userKey) in hex: how stores index a user's sessions without storing who it is. */
export function userHashOf(userKey: string): string {
  return createHash('sha256').update(userKey).digest('hex');
}

/** A stable, non-reversible id for log lines about a user. */
export function userTag(userKey: string): string {
  return createHash('sha256').update(userKey).digest('hex').slice(0, 12);
}

export function userKeyOf(issuer: string, sub: string): string {
  return `${issuer}\u0000${sub}`;
}
