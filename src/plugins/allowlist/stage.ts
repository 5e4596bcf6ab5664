// The allowlist stage: lets anonymous requests through on unauthenticated paths
// (skip_path_regex, RE2, compiled at config load) unless they name a COPY/MOVE Destination,
// and challenges the rest (CHALLENGE: the
// request's exit answers it in its caller's form, with the auth stage's verdict first — see
// src/plugins/auth/challenge.ts). Patterns see the normalized path (proxy, forward_single) or
// `scheme://host/path` (forward_domain); never the query string.
import { CHALLENGE, CONTINUE, type RequestContext, type Stage, type StageOutcome } from '../../pipeline/contract.js';
import type { ProviderRuntime } from '../../config/provider.js';
import { compiledOf, type CompiledSkipPaths } from '../../config/compiled.js';
import { page } from '../../http/pages.js';

/**
 * COPY and MOVE write to their Destination, which the allowlist does not decide: an anonymous
 * request may name none, through any door (behind a forward-auth endpoint too, where the
 * reverse proxy passes the request to the application itself).
 */
function anonymousDestination(ctx: RequestContext): StageOutcome {
  return page({ status: 403, title: 'Sign in first', message: 'COPY and MOVE (a request with a Destination header) need a signed-in user.', requestId: ctx.requestId, wantsJson: ctx.wantsJson, code: 'allowlist.destination_anonymous' });
}

export interface CompiledAllowlist extends CompiledSkipPaths {
  /** forward_domain matches the URL without its query; the other modes the path. */
  readonly matchUrl: boolean;
}

/** The provider's skip_path_regex as the config loader compiled it. */
export function compileAllowlist(p: ProviderRuntime): CompiledAllowlist {
  const { pattern, separate } = compiledOf(p.config).skipPaths;
  return { pattern, separate, matchUrl: p.mode === 'forward_domain' };
}

export function isAllowlisted(list: CompiledAllowlist, ctx: RequestContext): boolean {
  const separate = list.separate;
  if (list.pattern === null && separate.length === 0) return false;
  const t = ctx.target;
  const subject = list.matchUrl ? `${t.scheme}://${t.host}${t.path}` : t.path;
  if (list.pattern !== null && list.pattern.test(subject)) return true;
  for (let i = 0; i < separate.length; i++) if (separate[i]!.test(subject)) return true;
  return false;
}

export class AllowlistStage implements Stage {
  readonly name = 'allowlist';
  private readonly lists: CompiledAllowlist[];

  constructor(providers: readonly ProviderRuntime[]) {
    this.lists = providers.map(compileAllowlist);
  }

  run(ctx: RequestContext): StageOutcome | Promise<StageOutcome> {
    if (ctx.session !== null) return CONTINUE;
    if (isAllowlisted(this.lists[ctx.provider.index]!, ctx)) {
      if (ctx.headers.destination !== undefined) return anonymousDestination(ctx);
      ctx.allowlisted = true;
      return CONTINUE;
    }
    // Sign in first: the exit answers in its caller's form (src/plugins/auth/challenge.ts).
    return CHALLENGE;
  }
}
