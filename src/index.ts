// Portcullis's public API for third-party stage authors — the stage contract and nothing else:
//   import { defineStage, CONTINUE, page, type StageDeps } from 'portcullis';
// Nothing exported here reaches a secret (client or cookie secrets, keys, cookie codecs), and its
// declarations reference no internal module or openid-client type. Programs that embed the
// outpost import `portcullis/embed` (src/embed.ts). See docs/stages.md.
import { runStages as runChain } from './pipeline/chain.js';
import type { RequestContext, Stage, StageOutcome } from './pipeline/contract.js';

export { CHALLENGE, CONTINUE, CONTEXT_FIELDS, NO_OPTIONS, defineStage, respond } from './pipeline/contract.js';
export type {
  Action,
  Challenge,
  Continue,
  ContextField,
  Entry,
  HeaderAuthOutcome,
  HeaderMap,
  ProviderView,
  RequestContext,
  RequestTarget,
  Respond,
  SessionReader,
  Stage,
  StageDefinition,
  StageDeps,
  StageOutcome,
  UpstreamTarget,
} from './pipeline/contract.js';
export { LOGGER, PROVIDER_VIEWS, SESSION_READER, STAGE_OPTIONS, VERSION } from './pipeline/stage-tokens.js';
export type { Logger } from './pipeline/logger.js';
export { StageRegistry } from './pipeline/registry.js';
export { page, escapeHtml } from './http/pages.js';
export type { SessionRecord, SessionProxySettings, Claims } from './sessions/store.js';
export { VERSION_STRING } from './version.js';

/**
 * Runs stages in order on a context, without a server (a stage's own tests and benchmarks): the
 * first answer ends the run; only a returned promise is awaited.
 */
export const runStages: (stages: readonly Stage[], ctx: RequestContext) => StageOutcome | Promise<StageOutcome> = runChain;
