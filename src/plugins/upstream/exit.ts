// The upstream exit: where a proxied request that the chain let through goes. The provider's
// internal_host, or the session's validated backend_override (decided at login), with the Host
// header it gets; the exit completes the header stage's list with that Host (the one header only
// the target decides). Targets are built once per provider / per session, and each origin keeps
// one connection pool (see plugin.ts), reused across requests.
import { inject, injectable } from 'tsyringe';
import type { FastifyInstance } from 'fastify';
import { CONTINUE, type RequestContext, type Respond, type StageOutcome, type UpstreamTarget } from '../../pipeline/contract.js';
import type { Exit } from '../../pipeline/exits.js';
import { CONFIG, PROVIDERS, WEBSOCKETS } from '../../pipeline/tokens.js';
import type { WebSocketRegistry } from '../../server/websockets.js';
import type { PortcullisConfig } from '../../config/schema.js';
import type { ProviderRegistry } from '../../config/provider.js';
import { PerSessionCache } from '../../sessions/per-session-cache.js';
import { page } from '../../http/pages.js';
import { destinationOf } from '../../http/destination.js';
import { ROUTED_METHODS } from '../../http/methods.js';
import { registerUpstream } from './plugin.js';
import { toLogin } from '../auth/challenge.js';

const TRACE_REFUSED = Object.freeze({
  kind: 'respond' as const,
  status: 405,
  headers: Object.freeze({ allow: ROUTED_METHODS.filter((m) => m !== 'TRACE').join(', '), 'cache-control': 'no-store', 'content-type': 'text/plain; charset=utf-8' }),
  body: 'TRACE is not served.',
});

@injectable()
export class UpstreamExit implements Exit {
  readonly name = 'upstream';
  readonly afterChain = true;
  private readonly defaults: (UpstreamTarget | null)[];
  private readonly perSession = new PerSessionCache<UpstreamTarget>();

  /** Connection pool size and timeout for the transport (plugin.ts). */
  readonly transport: { connections: number; timeoutSeconds: number };

  constructor(
    @inject(PROVIDERS) readonly providers: ProviderRegistry,
    @inject(CONFIG) config: PortcullisConfig,
    @inject(WEBSOCKETS) readonly websockets: WebSocketRegistry,
  ) {
    this.transport = { connections: config.outpost.upstream_connections, timeoutSeconds: config.outpost.upstream_timeout };
    this.defaults = providers.all.map((p) => (p.internalOrigin ? Object.freeze({ origin: p.internalOrigin, hostHeader: p.internalHostHeader! }) : null));
  }

  /** The proxy door's routes (catch-all, every method), its connection pools and the WebSocket proxy. */
  fastify(scope: FastifyInstance): Promise<void> {
    return registerUpstream(scope, this);
  }

  /** To the outpost's login start (401 for API clients). */
  challenge(ctx: RequestContext): Respond {
    return toLogin(ctx);
  }

  finish(ctx: RequestContext): StageOutcome {
    // TRACE would reflect the request — identity headers included — back to the client.
    if (ctx.method === 'TRACE') return TRACE_REFUSED;
    const target = this.targetFor(ctx);
    if (target === null) {
      return page({ status: 502, title: 'No upstream', message: 'This provider has no internal_host to proxy to.', requestId: ctx.requestId, wantsJson: ctx.wantsJson, code: 'upstream.not_configured' });
    }
    if (this.websockets.full && isWebSocketUpgrade(ctx)) {
      return page({
        status: 503,
        title: 'Too many WebSockets',
        message: `This outpost already holds its limit of ${this.websockets.maxOpen} open WebSockets (outpost.websockets.max_open); try again shortly.`,
        requestId: ctx.requestId,
        wantsJson: ctx.wantsJson,
        code: 'websocket.limit',
        extraHeaders: { 'retry-after': '5' },
      });
    }
    ctx.upstream = target;
    if (ctx.upstreamHeaders !== null) {
      ctx.upstreamHeaders.push('host', target.hostHeader);
      if (ctx.headers.destination !== undefined) return destination(ctx, target, ctx.upstreamHeaders);
    }
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

/**
 * WebDAV COPY and MOVE name their target in `Destination`, an absolute URL on the host the client
 * sees (or an absolute path). The upstream gets another Host (internal_host), and servers such as
 * Apache's mod_dav refuse a Destination on a host that is not theirs (502 "different scheme or
 * port"): one on this provider's host is rewritten onto the upstream's, with the path normalized as
 * the request's is — the path the access rules decided (access-rules stage). One on any other host
 * is refused: it is no path of this application, and one naming the upstream's own internal name
 * would write where no rule decided. (An anonymous request names none: the allowlist stage refuses it.)
 */
function destination(ctx: RequestContext, target: UpstreamTarget, headers: string[]): StageOutcome {
  const i = headers.indexOf('destination');
  if (i === -1 || i % 2 !== 0) return CONTINUE;
  const dest = destinationOf(headers[i + 1]!, ctx.target);
  if (dest.kind === 'invalid') {
    return page({ status: 400, title: 'Bad request', message: `The Destination header was refused: ${dest.reason}.`, requestId: ctx.requestId, wantsJson: ctx.wantsJson, code: 'request.invalid_destination' });
  }
  if (dest.kind === 'elsewhere') {
    // RFC 4918 §9.8.5: a destination on another server is answered 502.
    return page({ status: 502, title: 'Bad Gateway', message: `The Destination is not on ${ctx.target.host}: this application can only copy or move within it.`, requestId: ctx.requestId, wantsJson: ctx.wantsJson, code: 'upstream.destination_elsewhere' });
  }
  const origin = target.origin.startsWith('https:') ? 'https://' : 'http://';
  headers[i + 1] = `${origin}${target.hostHeader}${dest.path}${dest.query === '' ? '' : '?' + dest.query}`;
  return CONTINUE;
}

function isWebSocketUpgrade(ctx: RequestContext): boolean {
  const u = ctx.headers.upgrade;
  return u !== undefined && u.toLowerCase() === 'websocket';
}
