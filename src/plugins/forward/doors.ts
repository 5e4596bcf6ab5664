// The forward-auth doors: one route per endpoint (Envoy's also takes every path below its prefix).
// A reverse proxy asks there whether the original request may pass; the context is that original
// request, the chain decides as for a proxied one, and the forward-auth exit answers — or, for
// the outpost's login endpoints behind the reverse proxy (Traefik, Caddy and Envoy send them
// here too), the auth plugin's login exit.
import type { Door, DoorDefinition } from '../../pipeline/doors.js';
import type { EntryResolver } from '../../pipeline/context.js';
import { page } from '../../http/pages.js';
import { forwardEntries } from './entries.js';

export const forwardDoors: DoorDefinition = {
  name: 'forward',
  create({ contexts, exits }) {
    const forward = exits.get('forward')!;
    const login = exits.get('login')!;
    return forwardEntries.map(
      (resolver: EntryResolver): Door => ({
        name: resolver.entry,
        routes: resolver.prefix ? [resolver.path, `${resolver.path}/*`] : [resolver.path],
        context(req, requestId) {
          const ctx = contexts.build(req, requestId, resolver);
          if ('kind' in ctx) return ctx;
          // A provider in proxy mode has no forward-auth endpoints.
          if (ctx.provider.mode === 'proxy') {
            return page({
              status: 400,
              title: 'Not a forward-auth provider',
              message: `The provider "${ctx.provider.name}" is in proxy mode; forward-auth endpoints need mode forward_single or forward_domain.`,
              requestId,
              wantsJson: ctx.wantsJson,
              code: 'routing.not_forward_mode',
            });
          }
          return ctx;
        },
        exit: (ctx) => (ctx.action === 'request' ? forward : login),
      }),
    );
  },
};
