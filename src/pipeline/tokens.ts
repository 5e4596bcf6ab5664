// Injection tokens. tsyringe is used with explicit tokens only: esbuild-based runners emit
// no decorator metadata, so nothing may depend on parameter types.
import type { InjectionToken } from 'tsyringe';
import type { PortcullisConfig } from '../config/schema.js';
import type { ProviderRegistry } from '../config/provider.js';
import type { SessionStore } from '../sessions/store.js';
import type { Logger } from './logger.js';
import type { WebSocketRegistry } from '../server/websockets.js';

export const CONFIG: InjectionToken<PortcullisConfig> = Symbol.for('portcullis.config');
export const PROVIDERS: InjectionToken<ProviderRegistry> = Symbol.for('portcullis.providers');
export const SESSION_STORE: InjectionToken<SessionStore> = Symbol.for('portcullis.sessionStore');
export const LOGGER: InjectionToken<Logger> = Symbol.for('portcullis.logger');
/** The validated `options` of the stage being built (bound in that stage's child container). */
export const STAGE_OPTIONS: InjectionToken<unknown> = Symbol.for('portcullis.stageOptions');
/** Portcullis's version string, as sent in X-authentik-meta-version. */
export const VERSION: InjectionToken<string> = Symbol.for('portcullis.version');

/**
 * Observes the login flow's outcomes (metrics). Optional: when nothing is registered the auth
 * stage uses `NO_AUTH_EVENTS`. Called once per login callback / sign-out, never per request.
 */
export interface AuthEvents {
  /** A login callback finished: a session was created (`ok`), or the login was refused. */
  login(provider: string, ok: boolean): void;
  /** A signed-in user signed out (all of the user's sessions were ended). */
  signOut(provider: string): void;
  /** Header auth: what became of one bearer token check (per request; keep it cheap). */
  headerAuth(provider: string, event: HeaderAuthEvent): void;
}
/**
 * `cache_hit`: answered from memory (or joined a check in flight); `local_refusal`: refused
 * without asking the IdP (malformed, a JWT that does not verify, expired, another client's);
 * `introspection`: one call to the IdP's introspection endpoint; `limited`: the provider's
 * introspection bound was reached (503).
 */
export type HeaderAuthEvent = 'cache_hit' | 'local_refusal' | 'introspection' | 'limited';
export const AUTH_EVENTS: InjectionToken<AuthEvents> = Symbol.for('portcullis.authEvents');
export const NO_AUTH_EVENTS: AuthEvents = Object.freeze({ login() {}, signOut() {}, headerAuth() {} });

/** The outpost's open WebSockets (the upstream stage's proxy registers them; shutdown closes them with 1001). */
export const WEBSOCKETS: InjectionToken<WebSocketRegistry> = Symbol.for('portcullis.websockets');
