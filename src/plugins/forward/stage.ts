// The forward stage: in forward-auth entries (nginx, Traefik, Caddy, Envoy) the request ends
// here with the decision for the reverse proxy: 200 with the identity headers (authenticated),
// 200 without them (allowlisted). Anonymous requests on protected paths never get here — the
// allowlist stage has already challenged them (401 for nginx, 302 to start for the others).
// Proxy entries pass through untouched.
import { CONTINUE, type HeaderMap, type RequestContext, type Stage, type StageOutcome } from '../../pipeline/contract.js';

export class ForwardStage implements Stage {
  readonly name = 'forward';
  private readonly allowAnonymous = Object.freeze({ kind: 'respond' as const, status: 200, headers: Object.freeze({ 'cache-control': 'no-store' }), body: '' });
  /** The answer's headers per identity map (the header stage caches one map per session). */
  private readonly answers = new WeakMap<HeaderMap, Record<string, string>>();

  run(ctx: RequestContext): StageOutcome {
    if (ctx.entry === 'proxy') return CONTINUE;
    if (ctx.session !== null && ctx.identityHeaders !== null) {
      let base = this.answers.get(ctx.identityHeaders);
      if (base === undefined) {
        base = { 'cache-control': 'no-store' };
        // A name with `_` is never emitted (as authentik since PR #17650): some servers fold it into `-`.
        for (const name in ctx.identityHeaders) if (name.indexOf('_') === -1) base[name] = ctx.identityHeaders[name]!;
        this.answers.set(ctx.identityHeaders, base);
      }
      const ua = ctx.headers['user-agent'];
      const headers = ua ? { ...base, 'user-agent': ua } : base;
      return { kind: 'respond', status: 200, headers, body: '' };
    }
    if (ctx.allowlisted) return this.allowAnonymous;
    // Fail closed: neither a session nor an unauthenticated path (a stage was removed from the chain?).
    return { kind: 'respond', status: 401, headers: { 'cache-control': 'no-store' }, body: 'unauthorized request' };
  }
}
