// The upstream stage: where a proxied request goes. The provider's internal_host, or the
// session's validated backend_override (decided at login), with the Host header it gets.
// Targets are built once per provider / per session, and each origin keeps one connection pool
// (see plugin.ts), reused across requests.
import { inject, injectable } from 'tsyringe';
import { CONTINUE, type RequestContext, type Stage, type StageOutcome, type UpstreamTarget } from '../../pipeline/contract.js';
import { CONFIG, PROVIDERS } from '../../pipeline/tokens.js';
import type { PortcullisConfig } from '../../config/schema.js';
import type { ProviderRegistry } from '../../config/provider.js';
import type { SessionRecord } from '../../sessions/store.js';
import { page } from '../../http/pages.js';

@injectable()
export class UpstreamStage implements Stage {
  readonly name = 'upstream';
  private readonly defaults: (UpstreamTarget | null)[];
  private readonly perSession = new WeakMap<SessionRecord, UpstreamTarget>();

  /** Connection pool size and timeout for the transport (plugin.ts). */
  readonly transport: { connections: number; timeoutSeconds: number };

  constructor(@inject(PROVIDERS) readonly providers: ProviderRegistry, @inject(CONFIG) config: PortcullisConfig) {
    this.transport = { connections: config.outpost.upstream_connections, timeoutSeconds: config.outpost.upstream_timeout };
    this.defaults = providers.all.map((p) => (p.internalOrigin ? Object.freeze({ origin: p.internalOrigin, hostHeader: p.internalHostHeader! }) : null));
  }

  run(ctx: RequestContext): StageOutcome {
    if (ctx.entry !== 'proxy') return CONTINUE;
    const target = this.targetFor(ctx);
    if (target === null) {
      return page({ status: 502, title: 'No upstream', message: 'This provider has no internal_host to proxy to.', requestId: ctx.requestId, wantsJson: ctx.wantsJson, code: 'upstream.not_configured' });
    }
    ctx.upstream = target;
    if (ctx.upstreamHeaders !== null) ctx.upstreamHeaders.push('host', target.hostHeader);
    return CONTINUE;
  }

  private targetFor(ctx: RequestContext): UpstreamTarget | null {
    const fallback = this.defaults[ctx.provider.index] ?? null;
    const s = ctx.session;
    const proxy = s?.proxy;
    if (!s || !proxy || (!proxy.backendOrigin && !proxy.hostHeader)) return fallback;
    let t = this.perSession.get(s);
    if (t === undefined) {
      const origin = proxy.backendOrigin ?? fallback?.origin;
      if (!origin) return null;
      t = Object.freeze({ origin, hostHeader: proxy.hostHeader ?? (proxy.backendOrigin ? proxy.backendHost! : fallback!.hostHeader) });
      this.perSession.set(s, t);
    }
    return t;
  }
}
