// Injection tokens. tsyringe is used with explicit tokens only: esbuild-based runners emit
// no decorator metadata, so nothing may depend on parameter types.
import type { InjectionToken } from 'tsyringe';
import type { PortcullisConfig } from '../config/schema.js';
import type { ProviderRegistry } from '../config/provider.js';
import type { SessionStore } from '../sessions/store.js';
import type { WebSocketRegistry } from '../server/websockets.js';

// Public tokens (LOGGER, STAGE_OPTIONS, VERSION, PROVIDER_VIEWS, SESSION_READER): see stage-tokens.ts.
export { LOGGER, STAGE_OPTIONS, VERSION, PROVIDER_VIEWS, SESSION_READER } from './stage-tokens.js';

// Internal tokens: they resolve secrets (client and cookie secrets, codecs, the store's writes),
// so only built-in stages' containers register them; a third-party stage's container does not.
export const CONFIG: InjectionToken<PortcullisConfig> = Symbol.for('portcullis.config');
export const PROVIDERS: InjectionToken<ProviderRegistry> = Symbol.for('portcullis.providers');
export const SESSION_STORE: InjectionToken<SessionStore> = Symbol.for('portcullis.sessionStore');

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
