// The login exit: the outpost's own endpoints — start, callback, sign_out, signed_out, userinfo —
// reached directly (the login doors, or a signature in a proxied URL's query) or through a
// forward-auth endpoint (Traefik, Caddy and Envoy ask about them like any path). No stage runs
// before it: these endpoints are served signed in or not, and identify the user with the auth
// stage's own lookup (the same session cache, the same bearer-token cache that sign-out purges).
import type { RequestContext, Respond, StageOutcome } from '../../pipeline/contract.js';
import { toLogin } from './challenge.js';
import type { Exit } from '../../pipeline/exits.js';
import type { Door, DoorDefinition } from '../../pipeline/doors.js';
import { isPromise } from '../../pipeline/maybe-async.js';
import type { WebSocketRegistry } from '../../server/websockets.js';
import type { SessionRecord } from '../../sessions/store.js';
import { page, sessionStoreUnavailable } from '../../http/pages.js';
import type { AuthStage } from './stage.js';
import { userinfo } from './userinfo.js';
import { LOGIN_ENDPOINTS } from './endpoints.js';

export class LoginExit implements Exit {
  readonly name = 'login';
  readonly afterChain = false;

  constructor(
    private readonly auth: AuthStage,
    private readonly websockets?: WebSocketRegistry,
  ) {}

  /** No stage runs before this exit, so none can challenge; fail closed all the same. */
  challenge(ctx: RequestContext): Respond {
    return toLogin(ctx);
  }

  finish(ctx: RequestContext): StageOutcome | Promise<StageOutcome> {
    const found = this.auth.lookup(ctx);
    if (isPromise(found)) return found.then((s) => this.serve(ctx, s));
    return this.serve(ctx, found);
  }

  private serve(ctx: RequestContext, session: SessionRecord | undefined): StageOutcome | Promise<StageOutcome> {
    if (session !== undefined) ctx.session = session;
    const login = this.auth.login;
    switch (ctx.action) {
      case 'start':
        return login.start(ctx);
      case 'callback':
        return login.callback(ctx);
      case 'signed_out':
        return login.signedOut(ctx);
      case 'userinfo':
        // A bearer token is as good as a cookie here (an API client of the same application).
        if (session === undefined && this.auth.runtimeOf(ctx).config.intercept_header_auth) {
          const viaHeader = this.auth.identifyByHeader(ctx);
          return isPromise(viaHeader) ? viaHeader.then(() => userinfo(ctx)) : userinfo(ctx);
        }
        return userinfo(ctx);
      case 'sign_out':
        // Whose sessions to end cannot be known: never a "signed out" page that is not true.
        if (ctx.sessionUnavailable) return sessionStoreUnavailable(ctx.requestId, ctx.wantsJson, 'Portcullis cannot reach its session store right now, so your sessions could not be ended. Try signing out again in a moment.');
        // Signing out ends the user's cached bearer-token sessions too (all providers).
        if (ctx.session !== null) {
          const userKey = ctx.session.userKey;
          this.auth.headerAuth.purgeUser(userKey);
          // The user's open WebSockets on this process close now; other replicas notice at their
          // next session check (outpost.websockets.session_check_interval).
          return login.signOut(ctx).then((out) => {
            this.websockets?.closeUser(userKey);
            return out;
          });
        }
        return login.signOut(ctx);
      case 'request':
        // A door sent an ordinary request here: fail closed.
        return page({ status: 500, title: 'Pipeline incomplete', message: 'No exit handled this request.', requestId: ctx.requestId, wantsJson: ctx.wantsJson, code: 'pipeline.unhandled' });
    }
  }
}

/**
 * The login doors: one route per endpoint, each served as it came (Host, or X-Forwarded-Host from
 * a trusted proxy) and handed to the login exit.
 */
export const loginDoors: DoorDefinition = {
  name: 'login',
  create({ contexts, exits }): Door {
    const exit = exits.get('login')!;
    return {
      name: 'login',
      routes: Object.values(LOGIN_ENDPOINTS),
      context: (req, requestId) => contexts.build(req, requestId),
      exit: () => exit,
    };
  },
};
