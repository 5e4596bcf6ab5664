// Portcullis's public API, for programs that embed it and for third-party stage authors:
//   import { defineStage, CONTINUE, STAGE_OPTIONS, page } from 'portcullis';
export { CONTINUE, NO_OPTIONS, defineStage, respond } from './pipeline/contract.js';
export type { Action, Continue, Entry, HeaderAuthOutcome, HeaderMap, RequestContext, RequestTarget, Respond, Stage, StageDefinition, StageOutcome, UpstreamTarget } from './pipeline/contract.js';
export { CONFIG, LOGGER, PROVIDERS, SESSION_STORE, STAGE_OPTIONS, VERSION } from './pipeline/tokens.js';
export type { Logger } from './pipeline/logger.js';
export { StageRegistry } from './pipeline/registry.js';
export { runStages } from './pipeline/chain.js';
export { page, escapeHtml } from './http/pages.js';
export { loadConfigFile, parseConfig, ConfigError } from './config/index.js';
export type { PortcullisConfig, ProviderConfig } from './config/index.js';
export { Outpost, type OutpostOptions } from './server/outpost.js';
export type { SessionRecord, SessionStore, Claims } from './sessions/store.js';
export { VERSION_STRING } from './version.js';
