// The forward-auth exit: a request through a forward-auth endpoint (nginx, Traefik, Caddy, Envoy)
// that the chain let through ends here with the decision for the reverse proxy: 200 with the
// identity headers (authenticated), 200 without them (allowlisted). Anonymous requests on
// protected paths never get here — the allowlist stage has already challenged them (401 for
// nginx, 302 to the IdP for the others).
//
// Envoy copies only the headers an answer carries (allowed_upstream_headers): a client's copy of an
// identity header the answer lacks — every one on an allowlisted path — would reach the
// application. Envoy answers therefore list every other identity and additional-header name in
// `x-envoy-auth-headers-to-remove`, which Envoy removes from the request it passes on.
import type { HeaderMap, RequestContext, Respond } from '../../pipeline/contract.js';
import type { Exit } from '../../pipeline/exits.js';
import type { Logger } from '../../pipeline/logger.js';
import { atIdp, forNginx } from '../auth/challenge.js';
import type { ProviderRegistry } from '../../config/provider.js';
import type { SessionStore } from '../../sessions/store.js';
import { IDENTITY_HEADERS } from '../../http/identity-headers.js';
import { hasUnderscore } from '../../http/header-names.js';

const ENVOY_REMOVE = 'x-envoy-auth-headers-to-remove';
const IDENTITY_NAMES = IDENTITY_HEADERS.map((h) => h.toLowerCase());

interface EnvoyAnswer {
  /** The size of the seen-names set the answer was built with (names only grow). */
  readonly seen: number;
  readonly answer: Respond;
}

export class ForwardExit implements Exit {
  readonly name = 'forward';
  readonly afterChain = true;
  private readonly allowAnonymous = Object.freeze({ kind: 'respond' as const, status: 200, headers: Object.freeze({ 'cache-control': 'no-store' }), body: '' });
  /**
   * The whole answer per identity map (the header stage caches one map per session): the
   * decision for a session is the same every time, so it is built once. Unlike authentik,
   * the request's User-Agent is not echoed: the reverse proxy sends the client's own upstream,
   * and a per-request copy would cost a ~25-key object per decision.
   */
  private readonly answers = new WeakMap<HeaderMap, Respond>();
  private readonly envoyAnswers = new WeakMap<HeaderMap, EnvoyAnswer>();
  private envoyAnonymous: EnvoyAnswer | null = null;
  /** additional_header_names of every provider. */
  private readonly declaredNames: readonly string[];
  /** Names seen at logins (the store's live set). */
  private readonly seenNames: ReadonlySet<string>;

  constructor(providers?: ProviderRegistry, store?: SessionStore, private readonly log?: Logger) {
    this.declaredNames = [...new Set(providers?.all.flatMap((p) => [...p.additionalHeaderNames]) ?? [])];
    this.seenNames = store?.headerNames() ?? new Set();
  }

  /** nginx: 401 (its configuration redirects); Traefik, Caddy, Envoy: the IdP's authorization URL. */
  challenge(ctx: RequestContext): Respond | Promise<Respond> {
    return ctx.entry === 'nginx' ? forNginx(ctx) : atIdp(ctx, this.log!);
  }

  finish(ctx: RequestContext): Respond {
    if (ctx.entry === 'envoy') return this.envoy(ctx);
    if (ctx.session !== null && ctx.identityHeaders !== null) {
      let answer = this.answers.get(ctx.identityHeaders);
      if (answer === undefined) {
        answer = Object.freeze({ kind: 'respond' as const, status: 200, headers: Object.freeze(answerHeaders(ctx.identityHeaders)), body: '' });
        this.answers.set(ctx.identityHeaders, answer);
      }
      return answer;
    }
    if (ctx.allowlisted) return this.allowAnonymous;
    return unauthorized();
  }

  private envoy(ctx: RequestContext): Respond {
    const seen = this.seenNames.size;
    if (ctx.session !== null && ctx.identityHeaders !== null) {
      const identity = ctx.identityHeaders;
      const cached = this.envoyAnswers.get(identity);
      if (cached !== undefined && cached.seen === seen) return cached.answer;
      const headers = answerHeaders(identity);
      const remove = this.namesToRemove(headers);
      if (remove !== '') headers[ENVOY_REMOVE] = remove;
      const answer = Object.freeze({ kind: 'respond' as const, status: 200, headers: Object.freeze(headers), body: '' });
      this.envoyAnswers.set(identity, { seen, answer });
      return answer;
    }
    if (!ctx.allowlisted) return unauthorized();
    if (this.envoyAnonymous === null || this.envoyAnonymous.seen !== seen) {
      const headers = { 'cache-control': 'no-store', [ENVOY_REMOVE]: this.namesToRemove({}) };
      this.envoyAnonymous = { seen, answer: Object.freeze({ kind: 'respond' as const, status: 200, headers: Object.freeze(headers), body: '' }) };
    }
    return this.envoyAnonymous.answer;
  }

  /** Every identity and additional-header name the answer does not set itself. */
  private namesToRemove(present: Record<string, string>): string {
    const names = new Set([...IDENTITY_NAMES, ...this.declaredNames, ...this.seenNames]);
    return [...names].filter((n) => !(n in present)).join(', ');
  }
}

/** A 200 answer's headers: the identity headers, never a name with `_`, and no caching. */
function answerHeaders(identity: HeaderMap): Record<string, string> {
  const headers: Record<string, string> = { 'cache-control': 'no-store' };
  for (const name in identity) if (!hasUnderscore(name)) headers[name] = identity[name]!;
  return headers;
}

/** Fail closed: neither a session nor an unauthenticated path (a third-party stage cleared them?). */
function unauthorized(): Respond {
  return { kind: 'respond', status: 401, headers: { 'cache-control': 'no-store' }, body: 'unauthorized request' };
}
