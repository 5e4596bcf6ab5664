// The proxy door: every other path, every method Node parses (the catch-all route of
// @fastify/http-proxy, which also takes WebSocket upgrades). An ordinary request goes to the
// upstream exit; a callback or logout signature in the query to the auth plugin's login exit.
import type { DoorDefinition } from '../../pipeline/doors.js';
import { OUTPOST_PREFIX } from '../../config/provider.js';
import { page } from '../../http/pages.js';
import type { UpstreamExit } from './exit.js';

export const proxyDoor: DoorDefinition = {
  name: 'proxy',
  create({ contexts, exits }) {
    const upstream = exits.get('upstream') as UpstreamExit;
    const login = exits.get('login')!;
    return {
      name: 'proxy',
      routes: ['/', '/*'],
      context(req, requestId) {
        const ctx = contexts.build(req, requestId);
        if ('kind' in ctx) return ctx;
        // A forward-mode provider has no upstream: on its hosts Portcullis serves only the login
        // endpoints and the forward-auth endpoints. Anything else was routed here by mistake (or
        // sent to Portcullis directly) and is never proxied.
        if (ctx.action === 'request' && ctx.provider.mode !== 'proxy') {
          return page({
            status: 404,
            title: 'Not found',
            message: `The provider "${ctx.provider.name}" is in ${ctx.provider.mode} mode: Portcullis answers only ${OUTPOST_PREFIX}/start, /callback, /sign_out, /signed_out, /userinfo and the forward-auth endpoints ${OUTPOST_PREFIX}/auth/{nginx,traefik,caddy,envoy} here, and proxies nothing. Route the application's other paths to the application itself.`,
            requestId,
            wantsJson: ctx.wantsJson,
            code: 'routing.forward_mode_no_upstream',
          });
        }
        return ctx;
      },
      exit: (ctx) => (ctx.action === 'request' ? upstream : login),
      fastify: (scope) => upstream.fastify(scope),
    };
  },
};
