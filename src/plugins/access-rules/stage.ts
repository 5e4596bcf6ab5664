// The access_rules stage: what the user's claims decide for this request. Scope mappings were
// evaluated once at login (see the auth stage); here only the provider's access rules run,
// against the session's claims, on the request path and on a COPY/MOVE's Destination path — a
// request they refuse gets 403 (in forward auth, a 403 to the
// reverse proxy, which avoids redirect loops).
import { CONTINUE, type RequestContext, type Stage, type StageOutcome } from '../../pipeline/contract.js';
import type { ProviderRuntime } from '../../config/provider.js';
import type { Logger } from '../../pipeline/logger.js';
import type { CompiledAccessRules } from '../../mappings/index.js';
import { compiledOf } from '../../config/compiled.js';
import { page } from '../../http/pages.js';
import { destinationOf } from '../../http/destination.js';
import { userTag } from '../../sessions/store.js';

export class AccessRulesStage implements Stage {
  readonly name = 'access_rules';
  private readonly rules: (CompiledAccessRules | null)[];

  constructor(
    providers: readonly ProviderRuntime[],
    private readonly log: Logger,
  ) {
    // Compiled by the config loader.
    this.rules = providers.map((p) => compiledOf(p.config).accessRules);
  }

  run(ctx: RequestContext): StageOutcome {
    const rules = this.rules[ctx.provider.index];
    // Anonymous requests here are on unauthenticated paths: public by definition.
    if (rules === null || rules === undefined || ctx.session === null) return CONTINUE;
    const verdict = rules.check(ctx.target.path, ctx.session.claims);
    if (!verdict.allowed) return this.denied(ctx, verdict.rule, ctx.target.path, 'open this page');
    // COPY and MOVE write to their Destination: the rules decide that path as well.
    const named = ctx.headers.destination;
    if (named === undefined) return CONTINUE;
    const dest = destinationOf(Array.isArray(named) ? named[0]! : named, ctx.target);
    if (dest.kind === 'invalid') {
      return page({ status: 400, title: 'Bad request', message: `The Destination header was refused: ${dest.reason}.`, requestId: ctx.requestId, wantsJson: ctx.wantsJson, code: 'request.invalid_destination' });
    }
    // Another host's is not decided here: the upstream exit refuses it (it is no path of this application).
    if (dest.kind === 'elsewhere') return CONTINUE;
    const onDest = rules.check(dest.path, ctx.session.claims);
    return onDest.allowed ? CONTINUE : this.denied(ctx, onDest.rule, dest.path, 'write to this destination');
  }

  private denied(ctx: RequestContext, rule: string, path: string, what: string): StageOutcome {
    this.log.info({ provider: ctx.provider.name, rule, user: userTag(ctx.session!.userKey), path, reqId: ctx.requestId }, 'access rule denied the request');
    return page({
      status: 403,
      title: 'Access denied',
      message: `You are signed in, but the access rule "${rule}" does not allow you to ${what}.`,
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: 'access.denied',
    });
  }
}
