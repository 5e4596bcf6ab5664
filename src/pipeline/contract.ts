// The stage contract: what every stage of the request chain receives and returns.
//
// A stage is a small class with one method, `run(ctx)`. It reads and writes only the
// per-request `RequestContext`; it never reaches into another stage. It can be
// constructed through the DI container and run without a server (unit tests, benchmarks).
import type { IncomingHttpHeaders } from 'node:http';
import { Type, type TSchema } from '@sinclair/typebox';
import type { DependencyContainer } from 'tsyringe';
import type { FastifyInstance } from 'fastify';
import type { ProviderRuntime } from '../config/provider.js';
import type { SessionRecord } from '../sessions/store.js';

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
  readonly provider: ProviderRuntime;
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

/** A stage's answer: go on, or answer the client now. */
export type StageOutcome = Continue | Respond;

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
 * How a stage is described to the registry: its name, its options schema (validated at
 * config load with ajv) and a factory. Third-party stages default-export one of these.
 */
export interface StageDefinition<Options = unknown> {
  readonly name: string;
  /** JSON Schema (TypeBox) for this stage's `options` in the config file. */
  readonly optionsSchema?: TSchema;
  /**
   * Build the stage. `container` is a child container in which `STAGE_OPTIONS` holds the
   * validated options and the outpost-wide tokens (config, providers, session store, logger)
   * are registered; resolve what you need by explicit token.
   */
  create(container: DependencyContainer, options: Options): Stage | Promise<Stage>;
  /**
   * Optional Fastify side of the stage, run inside the pipeline scope after its hook is added:
   * e.g. the upstream stage registers the proxy route and its connection pools here.
   */
  fastify?(scope: FastifyInstance, stage: Stage): Promise<void>;
}

/** The options schema of a stage that takes none: any option given is a config error. */
export const NO_OPTIONS = Type.Object({}, { additionalProperties: false, description: 'This stage takes no options.' });

export function defineStage<Options>(definition: StageDefinition<Options>): StageDefinition<Options> {
  return definition;
}
