// The forward stage: in forward-auth entries (nginx, Traefik, Caddy, Envoy) the request ends
// here with the decision for the reverse proxy: 200 with the identity headers (authenticated),
// 200 without them (allowlisted). Anonymous requests on protected paths never get here — the
// allowlist stage has already challenged them (401 for nginx, 302 to start for the others).
// Proxy entries pass through untouched.
import { CONTINUE, type HeaderMap, type RequestContext, type Respond, type Stage, type StageOutcome } from '../../pipeline/contract.js';

export class ForwardStage implements Stage {
  readonly name = 'forward';
  private readonly allowAnonymous = Object.freeze({ kind: 'respond' as const, status: 200, headers: Object.freeze({ 'cache-control': 'no-store' }), body: '' });
  /**
   * The whole answer per identity map (the header stage caches one map per session): the
   * decision for a session is the same every time, so it is built once. Unlike authentik,
   * the request's User-Agent is not echoed: the reverse proxy sends the client's own upstream,
   * and a per-request copy would cost a ~25-key object per decision.
   */
  private readonly answers = new WeakMap<HeaderMap, Respond>();

  run(ctx: RequestContext): StageOutcome {
    if (ctx.entry === 'proxy') return CONTINUE;
    if (ctx.session !== null && ctx.identityHeaders !== null) {
      let answer = this.answers.get(ctx.identityHeaders);
      if (answer === undefined) {
        const headers: Record<string, string> = { 'cache-control': 'no-store' };
        // A name with `_` is never emitted (as authentik since PR #17650): some servers fold it into `-`.
        for (const name in ctx.identityHeaders) if (name.indexOf('_') === -1) headers[name] = ctx.identityHeaders[name]!;
        answer = Object.freeze({ kind: 'respond' as const, status: 200, headers: Object.freeze(headers), body: '' });
        this.answers.set(ctx.identityHeaders, answer);
      }
      return answer;
    }
    if (ctx.allowlisted) return this.allowAnonymous;
    // Fail closed: neither a session nor an unauthenticated path (a stage was removed from the chain?).
    return { kind: 'respond', status: 401, headers: { 'cache-control': 'no-store' }, body: 'unauthorized request' };
  }
}
