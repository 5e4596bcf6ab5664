// Token refresh and sliding sessions (docs/sessions.md).
//
// A session that got a refresh token lives up to session_max_age, but its tokens only until
// `tokensExpireAt` (the token X-authentik-jwt carries, the access token, access_token_validity:
// whichever ends first). A request in the last quarter of that span (at most the last minute)
// or later refreshes the session with the refresh-token grant: new tokens, claims merged and the
// scope mappings evaluated again. At most one refresh per session runs at a time on the whole
// outpost: requests of one process share one attempt, and processes (replicas) share a lock in
// the session store. Whoever does not hold the lock goes on with the current tokens while they
// are valid, or waits for the holder's result. A refusal by the provider (revoked grant, user
// locked out, IdP session ended) or a failed refresh ends the session: the next request logs in.
import type { RequestContext } from '../../pipeline/contract.js';
import { runtimeOf, type ProviderRuntime } from '../../config/provider.js';
import type { Logger } from '../../pipeline/logger.js';
import { userTag, type SessionRecord, type SessionStore } from '../../sessions/store.js';
import { OidcError } from '../../oidc/client.js';
import { normalizeClaims } from '../../oidc/claims.js';
import { MappingEvaluationError } from '../../mappings/index.js';
import { jwtExp, sessionExpiresAt } from '../../sessions/lifetime.js';
import type { LoginFlow } from './login.js';

/** Longest a refresh may hold the lock (the token request's own timeout is 10 s). */
export const REFRESH_LOCK_MS = 15_000;
/** How long a request waits for another process's refresh before giving up (no session). */
const WAIT_FOR_OTHER_MS = 12_000;
const POLL_MS = 50;
/** Refresh at most this long before the tokens expire... */
const MAX_MARGIN_MS = 60_000;

/**
 * The refresh fields of a new session, or nothing when it cannot be refreshed. `tokensEnd` is
 * when its tokens stop being usable (src/sessions/lifetime.ts `sessionExpiresAt`, the end a
 * session without a refresh token has); a refreshable one lives up to session_max_age instead.
 */
export function refreshableLogin(p: ProviderRuntime, refreshToken: string | undefined, tokensEnd: number, now: number): Partial<SessionRecord> {
  if (refreshToken === undefined || !p.config.offline_access) return {};
  const expiresAt = now + p.sessionMaxAgeSeconds * 1000;
  return { refreshToken, tokensIssuedAt: now, tokensExpireAt: tokensEnd, expiresAt };
}

/** Whether a session should be refreshed now. */
export function needsRefresh(r: SessionRecord, now: number): boolean {
  if (r.refreshToken === undefined || r.tokensExpireAt === undefined) return false;
  const span = r.tokensExpireAt - (r.tokensIssuedAt ?? r.createdAt);
  return now >= r.tokensExpireAt - Math.min(MAX_MARGIN_MS, span / 4);
}

export class SessionRefresher {
  /** Refreshes running in this process, by session id: concurrent requests share one. */
  private readonly inflight = new Map<string, Promise<SessionRecord | undefined>>();

  constructor(
    private readonly store: SessionStore,
    private readonly login: LoginFlow,
    private readonly log: Logger,
  ) {}

  /** The session to use for this request: refreshed, the current one, or undefined (ended). */
  refresh(ctx: RequestContext, r: SessionRecord): Promise<SessionRecord | undefined> {
    let running = this.inflight.get(r.id);
    if (running === undefined) {
      running = this.run(ctx, r).finally(() => this.inflight.delete(r.id));
      this.inflight.set(r.id, running);
    }
    return running;
  }

  private async run(ctx: RequestContext, r: SessionRecord): Promise<SessionRecord | undefined> {
    const lock = await this.store.lockRefresh(r.id, REFRESH_LOCK_MS);
    if (lock === null) return this.awaitOther(r);
    try {
      // Another process may have refreshed between our read and our lock.
      const current = await this.store.get(r.id);
      if (current === undefined) return undefined;
      if (!needsRefresh(current, Date.now())) return current;
      return await this.refreshNow(ctx, current);
    } finally {
      await this.store.unlockRefresh(r.id, lock).catch(() => undefined);
    }
  }

  private async refreshNow(ctx: RequestContext, r: SessionRecord): Promise<SessionRecord | undefined> {
    const p = runtimeOf(ctx.provider);
    const user = userTag(r.userKey);
    let result;
    try {
      result = await p.oidc.refresh(r.refreshToken!, r.claims.sub);
    } catch (err) {
      const unreachable = err instanceof OidcError && (err.code === 'oidc.token_unreachable' || err.code === 'oidc.discovery_failed');
      if (unreachable && Date.now() < r.tokensExpireAt!) {
        // The tokens are still valid: keep the session, the next request tries again.
        this.log.warn({ provider: p.name, user, reqId: ctx.requestId }, 'refresh failed (identity provider unreachable); the current tokens are still valid');
        return r;
      }
      await this.store.delete(r.id);
      const code = err instanceof OidcError ? err.code : 'internal';
      this.log.info({ provider: p.name, user, code, detail: (err as Error).message, reqId: ctx.requestId }, 'refresh refused or failed; session ended');
      return undefined;
    }
    const now = Date.now();
    // The refreshed ID token's claims over the stored ones: claims that came from userinfo at
    // login stay. Then every claim takes its one shape again.
    const raw = normalizeClaims(result.claims === null ? r.claims : { ...r.claims, ...result.claims });
    const evaluated = this.login.sessionClaims(ctx, raw);
    if (evaluated instanceof MappingEvaluationError) {
      await this.store.delete(r.id);
      this.log.error({ provider: p.name, user, mapping: evaluated.mapping, detail: evaluated.detail, reqId: ctx.requestId }, 'scope mapping failed at refresh; session ended');
      return undefined;
    }
    const idToken = result.claims === null ? r.idToken : (result as { idToken: string }).idToken;
    // The same end as a login's tokens (src/sessions/lifetime.ts). Not capped by the session's
    // end: the store ends the session then anyway, and a cap would make refreshes pile up before it.
    const tokensExpireAt = sessionExpiresAt(now, p.sessionTtlSeconds, {
      idTokenExp: jwtExp(idToken),
      accessTokenExp: jwtExp(result.accessToken),
      accessTokenExpiresIn: result.accessTokenExpiresIn,
      forwardsIdToken: result.accessToken === undefined,
    });
    const next: SessionRecord = {
      ...r,
      claims: evaluated.claims as SessionRecord['claims'],
      proxy: evaluated.proxy,
      idToken,
      accessToken: result.accessToken,
      refreshToken: result.refreshToken ?? r.refreshToken,
      tokensIssuedAt: now,
      tokensExpireAt,
    };
    if (needsRefresh(next, now)) {
      // The provider gave nothing fresher (no new ID token while X-authentik-jwt carries it): the
      // session cannot go on with unexpired tokens.
      await this.store.delete(r.id);
      this.log.info({ provider: p.name, user, reqId: ctx.requestId }, 'refresh brought no usable tokens; session ended');
      return undefined;
    }
    await this.login.recordHeaderNames(ctx, next.proxy!);
    await this.store.put(next);
    this.log.debug({ provider: p.name, user, reqId: ctx.requestId }, 'session refreshed');
    return next;
  }

  /** Another process holds the lock: the current tokens while valid, else that process's result. */
  private async awaitOther(r: SessionRecord): Promise<SessionRecord | undefined> {
    if (Date.now() < r.tokensExpireAt!) return r;
    const deadline = Date.now() + WAIT_FOR_OTHER_MS;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      const current = await this.store.get(r.id);
      if (current === undefined) return undefined;
      if (current.tokensIssuedAt !== r.tokensIssuedAt && current.tokensExpireAt! > Date.now()) return current;
    }
    return undefined;
  }
}
