// The stage contract: what every stage of the request chain receives and returns.
//
// A stage is a small object with one method, `run(ctx)`. It reads and writes only the
// per-request `RequestContext`, and only the fields its definition declares; it never reaches
// into another stage. It is built by a plain factory, `create(deps, options)`, and can run
// without a server (unit tests, benchmarks). What a stage gets — the context's provider view,
// its deps — holds no secret: no client or cookie secret, no key, no cookie codec.
import type { IncomingHttpHeaders } from 'node:http';
import { Type, type TSchema } from '@sinclair/typebox';
import type { DependencyContainer } from 'tsyringe';
import type { SessionRecord } from '../sessions/store.js';
import type { Logger } from './logger.js';

/** How the decision of this request is delivered. */
export type Entry =
  /** Portcullis proxies the request to the upstream application. */
  | 'proxy'
  /** nginx `auth_request`: 200 allow, 401 challenge. */
  | 'nginx'
  /** Traefik / Caddy ForwardAuth: 200 allow, 302 challenge. */
  | 'traefik'
  | 'caddy'
  /** Envoy ext_authz (HTTP service): 200 allow, 302 challenge. */
  | 'envoy';

/** What the request asks Portcullis itself to do, before it is an ordinary request. */
export type Action = 'request' | 'start' | 'callback' | 'sign_out' | 'signed_out' | 'userinfo';

/**
 * The request target after Portcullis's one normalization (see src/http/normalize.ts).
 * The allowlist, access rules and the upstream all use these very strings.
 */
export interface RequestTarget {
  /** `http` or `https`, as seen by the client (trusted proxies may say so). */
  readonly scheme: 'http' | 'https';
  /** Lower-cased host, with the port only when it is not the scheme's default. */
  readonly host: string;
  /** The normalized path: what the upstream receives and what path regexes see. */
  readonly path: string;
  /** The raw query string without `?` ('' when none). Never used for decisions. */
  readonly query: string;
}

/** Identity headers and their values, with lower-case-insensitive names as emitted. */
export type HeaderMap = Record<string, string>;

/** A chosen upstream: an origin plus the Host header it is sent. */
export interface UpstreamTarget {
  /** `scheme://host[:port]`, the key of a reused connection pool. */
  readonly origin: string;
  /** Host header sent upstream. */
  readonly hostHeader: string;
}

/**
 * What the auth stage made of the request's `Authorization` header (intercept_header_auth):
 *  - `accepted`: the token was introspected and is valid for this provider; `session` is a
 *    transient record built from it (never stored) and the header is not forwarded upstream;
 *  - `refused`: the token is unknown, inactive, expired or issued to another client — 401
 *    `invalid_token` on protected paths (allowlisted paths go on anonymously);
 *  - `unavailable`: the identity provider could not be asked — 503 on protected paths;
 *  - `limited`: the provider's introspection bound (concurrency, rate) is reached — 503 with
 *    Retry-After on protected paths.
 */
export type HeaderAuthOutcome = 'accepted' | 'refused' | 'unavailable' | 'limited';

/**
 * What a stage may know about a provider: its identity, mode and public URLs. A frozen plain
 * object built at config load; it has no link (property, prototype, closure) to the provider's
 * secrets, keys, cookie codecs or OpenID client, which only Portcullis's built-in stages reach.
 */
export interface ProviderView {
  /** Position in `providers:` (and in `StageDeps.providers`): index per-provider tables with it. */
  readonly index: number;
  readonly name: string;
  /** assigned_application_slug, or the name slugified. */
  readonly slug: string;
  /** assigned_application_name, or the name. */
  readonly appName: string;
  readonly mode: 'proxy' | 'forward_single' | 'forward_domain';
  /** external_host's origin, e.g. `https://app.example.com`. */
  readonly externalBase: string;
  readonly externalScheme: 'http' | 'https';
  /** Normalized host of external_host (lower case, port only when not the default). */
  readonly externalHost: string;
  /** forward_domain: the cookie domain without its leading dot; else null. */
  readonly cookieDomain: string | null;
}

/** Reads sessions by id (read only; a stage cannot create, change or end one). */
export interface SessionReader {
  /** A live session, or undefined; a promise with an asynchronous store (Redis). Rejects when the store cannot be read. */
  get(id: string): SessionRecord | undefined | Promise<SessionRecord | undefined>;
}

export interface RequestContext {
  readonly requestId: string;
  readonly method: string;
  /** The request headers as received from the client (read only). */
  readonly headers: IncomingHttpHeaders;
  /** The client's address: the socket peer, or from X-Forwarded-For when the peer is trusted. */
  readonly clientIp: string;
  /** The socket peer address (never from headers). */
  readonly peerIp: string;
  /** Whether the peer is one of `trusted_proxies`. */
  readonly peerTrusted: boolean;
  /** The provider whose host this request is for (secret-free: see ProviderView). */
  readonly provider: ProviderView;
  readonly entry: Entry;
  readonly action: Action;
  readonly target: RequestTarget;
  /** Whether the client wants JSON (Accept, XHR): it gets 401s instead of redirects. */
  readonly wantsJson: boolean;

  /** Set by the auth stage: the user's session, or null when anonymous. */
  session: SessionRecord | null;
  /**
   * Set by the auth stage when the session came, or was refused, from an Authorization header
   * (bearer token or Basic `goauthentik.io/token`); null when no header authentication was
   * attempted (a session cookie, no or a foreign Authorization scheme, or intercept_header_auth off).
   */
  headerAuth: HeaderAuthOutcome | null;
  /**
   * Set by the auth stage when the request named a session (a valid cookie) but the session store
   * could not be asked (Redis down): the request is anonymous, allowlisted paths are served, and
   * protected paths answer 503 — never the login redirect that would loop, never the upstream.
   */
  sessionUnavailable: boolean;
  /** Set by the allowlist stage: the request matched an unauthenticated path. */
  allowlisted: boolean;
  /** Identity headers for the upstream (proxy) or the reverse proxy (forward auth). */
  identityHeaders: HeaderMap | null;
  /**
   * Headers sent upstream in proxy mode, built by the header stage: a flat
   * `[name, value, name, value, …]` list with lower-case names, exactly what the upstream
   * receives (a list rather than an object: V8 turns objects with this many dynamically added
   * keys into slow dictionaries, and undici takes the list as it is).
   */
  upstreamHeaders: string[] | null;
  /** Chosen by the upstream stage (proxy entries only). */
  upstream: UpstreamTarget | null;
  /** Set-Cookie values to add to whatever response is sent. */
  setCookies: string[] | null;
}

/**
 * The context fields stages write, and that a stage definition declares in `reads` / `writes`.
 * The other fields (requestId, method, headers, clientIp, provider, entry, action, target, …)
 * are read only and set before the first stage runs: every stage may read them.
 */
export const CONTEXT_FIELDS = ['session', 'headerAuth', 'sessionUnavailable', 'allowlisted', 'identityHeaders', 'upstreamHeaders', 'upstream', 'setCookies'] as const;
export type ContextField = (typeof CONTEXT_FIELDS)[number];

/** A stage's answer: go on, answer the client now, or ask for a signed-in user. */
export type StageOutcome = Continue | Respond | Challenge;

export interface Continue {
  readonly kind: 'continue';
}

export interface Respond {
  readonly kind: 'respond';
  readonly status: number;
  readonly headers?: Readonly<Record<string, string | string[]>>;
  readonly body?: string;
}

/** The one shared "go on" value: returning it allocates nothing. */
export const CONTINUE: Continue = Object.freeze({ kind: 'continue' });

/**
 * "Sign in first": the request needs a user and has none. The request's exit answers it in the
 * form its caller understands (a redirect to the login, 401 for nginx and API clients, the IdP's
 * authorization URL for Traefik, Caddy and Envoy), after the auth stage's verdict (a refused
 * token, an unreachable session store).
 */
export interface Challenge {
  readonly kind: 'challenge';
}

/** The one shared challenge value. */
export const CHALLENGE: Challenge = Object.freeze({ kind: 'challenge' });

export function respond(status: number, headers?: Record<string, string | string[]>, body?: string): Respond {
  return { kind: 'respond', status, headers, body };
}

export interface Stage {
  /** The stage's registry name, e.g. `allowlist`. */
  readonly name: string;
  /** Synchronous where possible: the chain only awaits a returned promise. */
  run(ctx: RequestContext): StageOutcome | Promise<StageOutcome>;
}

/**
 * What `create` receives besides the options: plain values, no decorators or container needed.
 * Nothing here (nor in what `container` resolves) reaches a secret.
 */
export interface StageDeps<Options = unknown> {
  /** The outpost's logger, bound to `{ stage: <name> }`. Never log tokens, cookies or query strings. */
  readonly logger: Logger;
  /** Every provider, in config order (`providers[ctx.provider.index] === ctx.provider`). */
  readonly providers: readonly ProviderView[];
  /**
   * The effective options per provider, indexed like `providers`: `options` with the entry's
   * `providers: { <name>: {...} }` overrides merged over it (top-level keys replaced), each set
   * validated by the options schema. Compile per-provider tables from it in `create`.
   */
  readonly providerOptions: readonly Options[];
  readonly sessions: SessionReader;
  /** outpost.name. */
  readonly outpostName: string;
  /** Portcullis's version string (as in X-authentik-meta-version). */
  readonly version: string;
  /**
   * For authors who prefer DI: a tsyringe child container with `STAGE_OPTIONS`, `LOGGER`,
   * `PROVIDER_VIEWS`, `SESSION_READER` and `VERSION` registered (by explicit token: tsx and
   * esbuild emit no decorator metadata). It resolves nothing with secrets.
   */
  readonly container: DependencyContainer;
}

/**
 * How a stage is described to the registry: its name, its options schema (validated at
 * config load with the config's own Ajv, formats included), the context fields it reads and
 * writes, and a factory. Third-party stages default-export one of these.
 */
export interface StageDefinition<Options = unknown> {
  readonly name: string;
  /** JSON Schema (TypeBox) for this stage's `options` in the config file. */
  readonly optionsSchema?: TSchema;
  /**
   * Context fields this stage reads (of CONTEXT_FIELDS). The chain refuses at config load an
   * order where a field is read before any earlier stage writes it.
   */
  readonly reads?: readonly ContextField[];
  /**
   * Context fields this stage may assign. A third-party stage that assigns another one fails
   * the request (500) and is logged; built-in stages are held to theirs by tests.
   */
  readonly writes?: readonly ContextField[];
  /** Build the stage, once per config load: compile everything here, not per request. */
  create(deps: StageDeps<Options>, options: Options): Stage | Promise<Stage>;
}

/** The options schema of a stage that takes none: any option given is a config error. */
export const NO_OPTIONS = Type.Object({}, { additionalProperties: false, description: 'This stage takes no options.' });

export function defineStage<Options>(definition: StageDefinition<Options>): StageDefinition<Options> {
  return definition;
}
