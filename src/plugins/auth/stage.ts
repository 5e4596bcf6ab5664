// The auth stage: finds who the user is from the provider's session cookie or, without one,
// from a bearer token in the Authorization header (intercept_header_auth, see header-auth.ts),
// or decides the request is anonymous. It rejects nothing by itself; a bad, tampered, foreign or
// expired cookie is exactly "no cookie" (and is cleared), and a refused token is only noted in
// `ctx.headerAuth` for the allowlist stage to answer. The login endpoints are the login exit's
// (exit.ts), which identifies the user with this stage's lookup.
import { CONTINUE, type RequestContext, type Stage, type StageOutcome } from '../../pipeline/contract.js';
import type { AuthEvents } from '../../pipeline/tokens.js';
import type { WebSocketRegistry } from '../../server/websockets.js';
import type { ProviderRegistry, ProviderRuntime } from '../../config/provider.js';
import type { SessionRecord, SessionStore } from '../../sessions/store.js';
import type { Logger } from '../../pipeline/logger.js';
import { isPromise } from '../../pipeline/maybe-async.js';
import { clearCookie, readCookie } from '../../http/cookies.js';
import { LoginFlow, addCookie, safeDecode } from './login.js';
import { HeaderAuthenticator, tokenOf, type HeaderAuthResult } from './header-auth.js';
import { SessionRefresher, needsRefresh } from './refresh.js';

/** Decoded cookie → session id, so that a returning cookie skips the decryption. Bounded. */
const ID_CACHE_LIMIT = 50_000;

export class AuthStage implements Stage {
  readonly name = 'auth';
  readonly login: LoginFlow;
  /** Bearer-token introspection and its cache. */
  readonly headerAuth: HeaderAuthenticator;
  /** Session ids of the cookie values seen, one map per provider (no key to build per request). */
  private readonly idCaches: Map<string, string>[];
  private readonly idCacheLimit: number;
  private readonly log: Logger;
  private readonly refresher: SessionRefresher;

  private readonly providers: readonly ProviderRuntime[];

  /** The provider of a request, with its settings (the context holds only its secret-free view). */
  runtimeOf(ctx: RequestContext): ProviderRuntime {
    return this.providers[ctx.provider.index]!;
  }

  /** `log` is already bound to `{ stage: 'auth' }` (StageDeps.logger). */
  constructor(
    providers: ProviderRegistry,
    private readonly store: SessionStore,
    log: Logger,
    events?: AuthEvents,
    /** The outpost's WebSockets (the login exit closes a user's at sign-out). */
    readonly websockets?: WebSocketRegistry,
  ) {
    const own = log;
    this.providers = providers.all;
    this.idCaches = providers.all.map(() => new Map());
    this.idCacheLimit = Math.max(1_000, Math.floor(ID_CACHE_LIMIT / Math.max(1, providers.all.length)));
    this.log = own;
    this.login = new LoginFlow(providers.all, store, own, events);
    this.headerAuth = new HeaderAuthenticator(own, { events });
    this.refresher = new SessionRefresher(store, this.login, own);
  }

  run(ctx: RequestContext): StageOutcome | Promise<StageOutcome> {
    const found = this.lookup(ctx);
    if (isPromise(found)) return found.then((s) => this.afterLookup(ctx, s));
    return this.afterLookup(ctx, found);
  }

  private afterLookup(ctx: RequestContext, session: SessionRecord | undefined): StageOutcome | Promise<StageOutcome> {
    if (session !== undefined) ctx.session = session;
    else if (!ctx.sessionUnavailable && this.providers[ctx.provider.index]!.config.intercept_header_auth) return this.identifyByHeader(ctx);
    return CONTINUE;
  }

  /** No session cookie: a bearer token (or Basic goauthentik.io/token) in Authorization, if any. */
  identifyByHeader(ctx: RequestContext): StageOutcome | Promise<StageOutcome> {
    const token = tokenOf(ctx.headers.authorization);
    if (token === null) return CONTINUE;
    const result = this.headerAuth.authenticate(this.providers[ctx.provider.index]!, token);
    if (isPromise(result)) return result.then((r) => applyHeaderAuth(ctx, r));
    return applyHeaderAuth(ctx, result);
  }

  /** The live session of this request's provider, or undefined (clearing a cookie that names none). */
  lookup(ctx: RequestContext): SessionRecord | undefined | Promise<SessionRecord | undefined> {
    const p = this.providers[ctx.provider.index]!;
    const raw = readCookie(ctx.headers.cookie, p.cookieName);
    if (raw === undefined || raw === '') return undefined;
    const id = this.sessionIdOf(p, raw);
    if (id === undefined) return this.reject(ctx);
    let found;
    try {
      found = this.store.get(id);
    } catch (err) {
      return this.unavailable(ctx, err as Error); // the embedded store reads synchronously
    }
    if (isPromise(found)) return found.then((r) => this.accept(ctx, r), (err: Error) => this.unavailable(ctx, err));
    return this.accept(ctx, found);
  }

  /** The store failed: the cookie is kept (the session may be fine), the request goes on anonymous. */
  private unavailable(ctx: RequestContext, err: Error): undefined {
    ctx.sessionUnavailable = true;
    this.log.debug({ reqId: ctx.requestId, provider: ctx.provider.name, err: err.message }, 'session store unavailable: request treated as anonymous');
    return undefined;
  }

  private accept(ctx: RequestContext, r: SessionRecord | undefined): SessionRecord | undefined | Promise<SessionRecord | undefined> {
    const now = Date.now();
    if (r === undefined || r.provider !== ctx.provider.name || r.expiresAt <= now) return this.reject(ctx);
    // Tokens near their end (or past it) are refreshed first: X-authentik-jwt is never expired.
    if (r.refreshToken !== undefined && needsRefresh(r, now)) {
      return this.refresher.refresh(ctx, r).then(
        (s) => s ?? this.reject(ctx),
        (err: Error) => this.unavailable(ctx, err),
      );
    }
    return r;
  }

  private reject(ctx: RequestContext): undefined {
    const p = this.providers[ctx.provider.index]!;
    addCookie(ctx, clearCookie(p.cookieName, p.cookieSuffix));
    return undefined;
  }

  private sessionIdOf(p: ProviderRuntime, raw: string): string | undefined {
    const cache = this.idCaches[p.index]!;
    const cached = cache.get(raw);
    if (cached !== undefined) return cached;
    const data = p.sessionCodec.decode(safeDecode(raw));
    const id = data && typeof data.s === 'string' ? data.s : undefined;
    if (id !== undefined) {
      if (cache.size >= this.idCacheLimit) cache.clear();
      cache.set(raw, id);
    }
    return id;
  }
}

function applyHeaderAuth(ctx: RequestContext, result: HeaderAuthResult): StageOutcome {
  ctx.headerAuth = result.kind;
  if (result.kind === 'accepted') ctx.session = result.session;
  return CONTINUE;
}
