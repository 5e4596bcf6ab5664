// The injection tokens of the public stage contract: what a third-party stage's container
// resolves (see StageDeps.container). Kept apart from tokens.ts, whose internal tokens name the
// config, provider runtimes and store types, so that the package's public declarations stay the
// contract alone.
import type { InjectionToken } from 'tsyringe';
import type { ProviderView, SessionReader } from './contract.js';
import type { Logger } from './logger.js';

export const LOGGER: InjectionToken<Logger> = Symbol.for('portcullis.logger');
/** The validated `options` of the stage being built (bound in that stage's child container). */
export const STAGE_OPTIONS: InjectionToken<unknown> = Symbol.for('portcullis.stageOptions');
/** Portcullis's version string, as sent in X-authentik-meta-version. */
export const VERSION: InjectionToken<string> = Symbol.for('portcullis.version');
/** Every provider's secret-free view, in config order. */
export const PROVIDER_VIEWS: InjectionToken<readonly ProviderView[]> = Symbol.for('portcullis.providerViews');
/** Reads sessions by id. */
export const SESSION_READER: InjectionToken<SessionReader> = Symbol.for('portcullis.sessionReader');
