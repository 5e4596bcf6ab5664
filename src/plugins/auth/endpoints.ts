// The login endpoints under /outpost.goauthentik.io/ and the query signatures authentik's outpost
// acts on anywhere (`?X-authentik-auth-callback=true`, `?X-authentik-logout=true`): what a request
// asks of Portcullis itself. The auth plugin serves them (exit.ts); the doors route them here.
import type { Action, RequestTarget } from '../../pipeline/contract.js';
import { OUTPOST_PREFIX } from '../../config/provider.js';

/** Each login endpoint's path and the action it is. */
export const LOGIN_ENDPOINTS: Readonly<Record<Exclude<Action, 'request'>, string>> = Object.freeze({
  start: `${OUTPOST_PREFIX}/start`,
  callback: `${OUTPOST_PREFIX}/callback`,
  sign_out: `${OUTPOST_PREFIX}/sign_out`,
  signed_out: `${OUTPOST_PREFIX}/signed_out`,
  userinfo: `${OUTPOST_PREFIX}/userinfo`,
});

const ACTIONS: ReadonlyMap<string, Action> = new Map(Object.entries(LOGIN_ENDPOINTS).map(([action, path]) => [path, action as Action]));

/**
 * Pages Portcullis serves only to direct requests: through a forward-auth endpoint a 2xx means
 * "allow" to the reverse proxy, which would pass the request on to the application instead.
 */
const DIRECT_ONLY: ReadonlySet<Action> = new Set<Action>(['signed_out', 'userinfo']);
const SIGNATURE = /(?:^|&)x-authentik-(auth-callback|logout)=true(?:&|$)/i;

/** The action of a normalized target (`forwarded`: it came through a forward-auth endpoint). */
export function loginActionOf(target: Pick<RequestTarget, 'path' | 'query'>, forwarded: boolean): Action {
  const action = ACTIONS.get(target.path);
  if (action !== undefined) return forwarded && DIRECT_ONLY.has(action) ? 'request' : action;
  // The shortest signature is 31 characters: most queries are not even scanned.
  if (target.query.length > 20) {
    const m = SIGNATURE.exec(target.query);
    if (m) return m[1]!.toLowerCase() === 'logout' ? 'sign_out' : 'callback';
  }
  return 'request';
}
