// The forward stage: in forward-auth entries (nginx, Traefik, Caddy, Envoy) the request ends
// here with the decision for the reverse proxy: 200 with the identity headers (authenticated),
// 200 without them (allowlisted). Anonymous requests on protected paths never get here — the
// allowlist stage has already challenged them. Proxy entries pass through untouched.
import { CONTINUE, type RequestContext, type Stage, type StageOutcome } from '../../pipeline/contract.js';

export class ForwardStage implements Stage {
  readonly name = 'forward';
  private readonly allowAnonymous = Object.freeze({ kind: 'respond' as const, status: 200, headers: Object.freeze({ 'cache-control': 'no-store' }), body: '' });

  run(ctx: RequestContext): StageOutcome {
    if (ctx.entry === 'proxy') return CONTINUE;
    if (ctx.session !== null && ctx.identityHeaders !== null) {
      const headers: Record<string, string> = { 'cache-control': 'no-store' };
      const ua = ctx.headers['user-agent'];
      if (ua) headers['user-agent'] = ua;
      Object.assign(headers, ctx.identityHeaders);
      return { kind: 'respond', status: 200, headers, body: '' };
    }
    if (ctx.allowlisted) return this.allowAnonymous;
    // Fail closed: neither a session nor an unauthenticated path (a stage was removed from the chain?).
    return { kind: 'respond', status: 401, headers: { 'cache-control': 'no-store' }, body: 'unauthorized request' };
  }
}
