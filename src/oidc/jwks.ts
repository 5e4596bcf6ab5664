// The signing keys of one OpenID Provider (its jwks_uri), and the one place where Portcullis
// verifies a JWT the provider signed: ID tokens at login, JWT access tokens in header auth, and
// whatever else the provider signs (logout tokens…).
//
// Why not jose's createRemoteJWKSet: after a fetch it refuses to fetch again for 30 s
// (cooldownDuration), so when the provider rotates its keys less than 30 s after Portcullis
// fetched them, every token signed with the new key fails until the cool-down ends: a login
// lockout. Here a token whose key id the cached set lacks makes the set be fetched again at
// once. The refetch is bounded so that made-up key ids cannot turn Portcullis into a load
// generator against the provider: one fetch in flight (every caller joins it), at most one
// fetch per `refetchFloorMs` (a caller arriving sooner waits for the next allowed fetch instead
// of failing, so a rotation right after a fetch costs a login at most that wait), and a caller
// whose miss is already answered by a fetch completed after it looked does not fetch again.
import {
  createLocalJWKSet,
  errors,
  jwtVerify,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTVerifyOptions,
  type JWTVerifyResult,
} from 'jose';
import type { Logger } from '../pipeline/logger.js';

/** A fetched key set is used at most this long before it is fetched again (jose's default too). */
export const JWKS_MAX_AGE_MS = 10 * 60_000;
/** The least time between two fetches of the key set (the refetch-storm guard). */
export const JWKS_REFETCH_FLOOR_MS = 1_000;
export const JWKS_TIMEOUT_MS = 10_000;

/** The key set could not be fetched (and no cached key fits): the provider's fault, not the token's. */
export class JwksUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JwksUnavailable';
  }
}

export interface ProviderKeysOptions {
  maxAgeMs?: number;
  refetchFloorMs?: number;
  timeoutMs?: number;
  /** Clock (ms), for tests. */
  now?: () => number;
}

type LocalKeySet = ReturnType<typeof createLocalJWKSet>;

export class ProviderKeys {
  private local: LocalKeySet | null = null;
  /** When the current set was fetched (ms); -Infinity before the first success. */
  private fetchedAt = Number.NEGATIVE_INFINITY;
  /** When the last fetch began, successful or not: the floor counts from here. */
  private attemptedAt = Number.NEGATIVE_INFINITY;
  /** Bumped by every finished fetch attempt: tells a caller whether a fetch happened since it looked. */
  private generation = 0;
  private lastError: Error | null = null;
  private inflight: Promise<void> | null = null;
  private fetchCount = 0;
  private readonly maxAgeMs: number;
  private readonly floorMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  /** jose's key resolver shape: pass to jwtVerify. */
  readonly getKey: (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

  constructor(
    readonly uri: URL,
    private readonly log: Logger,
    opts: ProviderKeysOptions = {},
  ) {
    this.maxAgeMs = opts.maxAgeMs ?? JWKS_MAX_AGE_MS;
    this.floorMs = opts.refetchFloorMs ?? JWKS_REFETCH_FLOOR_MS;
    this.timeoutMs = opts.timeoutMs ?? JWKS_TIMEOUT_MS;
    this.now = opts.now ?? Date.now;
    this.getKey = (header, token) => this.keyFor(header, token);
  }

  /**
   * Verifies a JWS signed by the provider (jose's jwtVerify with this key set). Throws
   * JwksUnavailable when the keys could not be fetched, jose's errors when the token is bad.
   */
  async verify(jwt: string, options: JWTVerifyOptions): Promise<JWTVerifyResult> {
    try {
      return await jwtVerify(jwt, this.getKey, options);
    } catch (err) {
      // A token without `kid` while the set holds several keys of its kind (as during a
      // rotation): try each candidate, as jose documents.
      if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
      for await (const key of err as unknown as AsyncIterable<CryptoKey>) {
        try {
          return await jwtVerify(jwt, key, options);
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw new errors.JWSSignatureVerificationFailed();
    }
  }

  /** How many fetches of the key set were started (tests and metrics). */
  get fetches(): number {
    return this.fetchCount;
  }

  private async keyFor(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    if (this.local === null || this.now() - this.fetchedAt >= this.maxAgeMs) {
      // A stale set that cannot be refreshed is still better than none: keys rotate slowly.
      await this.refresh(this.generation);
      if (this.local === null) throw new JwksUnavailable(`the signing keys could not be fetched: ${this.lastError?.message ?? 'unknown error'}`);
    }
    const seen = this.generation;
    try {
      return (await this.local(header, token));
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
    }
    // A key id we do not hold: the provider may have rotated its keys since we fetched them.
    await this.refresh(seen);
    try {
      return (await this.local(header, token));
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey && this.lastError) {
        throw new JwksUnavailable(`the signing keys could not be fetched again: ${this.lastError.message}`);
      }
      throw err;
    }
  }

  /** Fetches the set again unless a fetch finished since generation `seen`; joins one in flight. */
  private refresh(seen: number): Promise<void> {
    if (this.generation !== seen) return Promise.resolve();
    this.inflight ??= this.fetchAfterFloor().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async fetchAfterFloor(): Promise<void> {
    const wait = this.attemptedAt + this.floorMs - this.now();
    if (wait > 0) await new Promise<void>((resolve) => setTimeout(resolve, wait).unref());
    this.attemptedAt = this.now();
    this.fetchCount++;
    try {
      const json = await this.fetchSet();
      const local = createLocalJWKSet(json);
      const before = this.local ? new Set(this.local.jwks()?.keys.map((k) => k.kid)) : null;
      const added = json.keys.filter((k) => k.kid !== undefined && before !== null && !before.has(k.kid)).length;
      this.local = local;
      this.fetchedAt = this.now();
      this.lastError = null;
      if (added > 0) this.log.info({ jwks_uri: this.uri.href, keys: json.keys.length, added }, 'the identity provider has new signing keys');
    } catch (err) {
      this.lastError = err as Error;
      this.log.error({ jwks_uri: this.uri.href, err: (err as Error).message }, 'fetching the signing keys (JWKS) failed');
    } finally {
      this.generation++;
    }
  }

  private async fetchSet(): Promise<JSONWebKeySet> {
    const response = await fetch(this.uri, {
      redirect: 'manual',
      headers: { accept: 'application/jwk-set+json, application/json' },
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new Error(`HTTP ${response.status} from the jwks_uri`);
    }
    const json = (await response.json()) as JSONWebKeySet;
    if (json === null || typeof json !== 'object' || !Array.isArray(json.keys)) throw new Error('the jwks_uri answered no JSON Web Key Set');
    return json;
  }
}
