// The configuration file's schema. Field names follow authentik's ProxyOutpostConfig so that a
// provider can be copied over from authentik; outpost-level fields are Portcullis's own.
import { Type, type Static } from '@sinclair/typebox';

const Mode = Type.Union([Type.Literal('proxy'), Type.Literal('forward_single'), Type.Literal('forward_domain')], {
  default: 'proxy',
  description: 'proxy: Portcullis proxies to internal_host. forward_single / forward_domain: forward auth for a reverse proxy.',
});

export const MappingSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'Name shown in errors and logs.' }),
    expression: Type.String({ minLength: 1, description: 'CEL expression returning a map merged into the claims at login.' }),
  },
  { additionalProperties: false },
);

export const AccessRuleSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1 })),
    paths: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'RE2 regexes on the normalized path; all paths when absent.' })),
    when: Type.String({ minLength: 1, description: 'CEL condition over the session claims; false means 403.' }),
  },
  { additionalProperties: false },
);

export const ProviderSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, description: "The provider's name (X-authentik-meta-provider)." }),
    issuer: Type.String({ format: 'uri', description: "The OpenID Provider's issuer URL (discovery at /.well-known/openid-configuration)." }),
    client_id: Type.String({ minLength: 1 }),
    client_secret: Type.String({ minLength: 1 }),
    token_endpoint_auth_method: Type.Optional(
      Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')], { default: 'client_secret_basic' }),
    ),
    cookie_secret: Type.String({ minLength: 16, description: 'Secret from which the session cookie keys are derived (at least 16 characters).' }),
    external_host: Type.String({ format: 'uri', pattern: '^https?://', description: 'Public URL of the application (or of the auth host in forward_domain).' }),
    internal_host: Type.Optional(Type.String({ format: 'uri', pattern: '^https?://', description: 'Upstream URL (proxy mode); only scheme, host and port are used.' })),
    internal_host_ssl_validation: Type.Boolean({ default: true }),
    mode: Mode,
    cookie_domain: Type.String({ default: '' }),
    skip_path_regex: Type.String({ default: '', description: 'Unauthenticated paths: one RE2 regex per line.' }),
    basic_auth_enabled: Type.Boolean({ default: false }),
    basic_auth_user_attribute: Type.String({ default: '' }),
    basic_auth_password_attribute: Type.String({ default: '' }),
    intercept_header_auth: Type.Boolean({
      default: true,
      description: 'Without a session cookie, authenticate Authorization: Bearer tokens (or Basic goauthentik.io/token) by introspection at the IdP; false: leave Authorization alone.',
    }),
    access_token_format: Type.Union([Type.Literal('auto'), Type.Literal('jwt'), Type.Literal('opaque')], {
      default: 'auto',
      description:
        "Header auth, before any introspection: auto: a bearer token that is a JWS with an asymmetric alg must verify against the provider's JWKS, be unexpired and name this client, else it is refused locally; jwt: the IdP issues only such JWT access tokens (authentik), so any other token is refused locally too; opaque: every token is introspected.",
    }),
    introspection_concurrency: Type.Integer({ minimum: 1, default: 8, description: 'Header auth: introspection calls in flight to the IdP at most; beyond: 503 with Retry-After.' }),
    introspection_rate: Type.Integer({ minimum: 1, default: 20, description: 'Header auth: introspection calls per second at most (bursts up to the same number); beyond: 503 with Retry-After.' }),
    access_token_validity: Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: '^(\\s*(weeks|days|hours|minutes|seconds)=\\d+\\s*;?)+$' })], {
      default: 3600,
      description: 'Longest session lifetime: seconds, or authentik\'s form "hours=1;minutes=30"; a session also ends with its token.',
    }),
    assigned_application_slug: Type.Optional(Type.String({ minLength: 1 })),
    assigned_application_name: Type.Optional(Type.String({ minLength: 1 })),
    scopes_to_request: Type.Array(Type.String({ minLength: 1, pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), {
      default: ['openid', 'profile', 'email', 'entitlements', 'ak_proxy'],
    }),
    fetch_userinfo: Type.Union([Type.Literal('auto'), Type.Literal('always'), Type.Literal('never')], {
      default: 'auto',
      description:
        "When to ask the provider's userinfo endpoint for the user's claims: auto (when the ID token or a bearer token's introspection answer lacks preferred_username, email, name or groups), always, never.",
    }),
    post_logout_redirect_uri: Type.Optional(Type.String({ format: 'uri', pattern: '^https?://' })),
    mappings: Type.Array(MappingSchema, { default: [] }),
    access_rules: Type.Array(AccessRuleSchema, { default: [] }),
    allowed_backend_hosts: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'When set, backend_override must name one of these hosts.' })),
    allow_identity_header_override: Type.Boolean({ default: false, description: 'Let additionalHeaders replace X-authentik-* identity headers.' }),
    offline_access: Type.Boolean({
      default: true,
      description: 'Ask for offline_access when the provider lists it; a session that got a refresh token is refreshed before its tokens expire, up to session_max_age.',
    }),
    session_max_age: Type.Union([Type.Integer({ minimum: 60 }), Type.String({ pattern: '^(\\s*(weeks|days|hours|minutes|seconds)=\\d+\\s*;?)+$' })], {
      default: 86400,
      description: 'Longest life of a refreshed session (seconds, or "days=1"); a session without a refresh token ends with its tokens.',
    }),
    frontchannel_logout: Type.Union([Type.Literal('sid'), Type.Literal('cookie'), Type.Literal('off')], {
      default: 'sid',
      description:
        "What a front-channel logout request (an unauthenticated GET with iss and sid) may end: sid (every session of that IdP session: for providers whose sid is random), cookie (only when the request also carries this provider's session cookie of that sid: for providers whose sid can be guessed), off.",
    }),
    userinfo_include_token: Type.Boolean({ default: false, description: 'Include the X-authentik-jwt token as `token` in /outpost.goauthentik.io/userinfo answers.' }),
    additional_header_names: Type.Array(Type.String({ minLength: 1, maxLength: 256, pattern: "^[!#$%&'*+.^`|~0-9A-Za-z-]+$" }), {
      default: [],
      description: 'Header names additionalHeaders may produce for this provider; client copies are removed from every request of the outpost (names seen at logins are added on their own).',
    }),
  },
  { additionalProperties: false },
);

const TlsCertificate = Type.Object(
  {
    cert: Type.String({ minLength: 1, description: 'Path to a PEM certificate chain.' }),
    key: Type.String({ minLength: 1, description: 'Path to its PEM private key.' }),
  },
  { additionalProperties: false },
);

const MaxSessionsPerUser = Type.Integer({
  minimum: 0,
  default: 100,
  description: 'Live sessions kept per user (all providers); a new login beyond it ends the oldest. 0: no cap.',
});

const EmbeddedStore = Type.Object(
  {
    type: Type.Literal('embedded'),
    path: Type.String({
      default: '.portcullis/sessions.db',
      description: 'SQLite database that keeps sessions across restarts (a *.jsonl journal of older versions is migrated into <name>.db).',
    }),
    max_sessions_per_user: MaxSessionsPerUser,
  },
  { additionalProperties: false },
);

const RedisNode = Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s/\\[\\]]+):\\d{1,5}$', description: 'host:port' });

const RedisStore = Type.Object(
  {
    type: Type.Literal('redis'),
    url: Type.Optional(
      Type.String({
        pattern: '^rediss?://[^\\s]+$',
        description: 'One Redis: redis://[user:password@]host[:port][/db], or rediss:// for TLS; may use ${ENV} / ${file:…} for the password.',
      }),
    ),
    sentinel: Type.Optional(
      Type.Object(
        {
          master_name: Type.String({ minLength: 1, description: 'The name the sentinels monitor the master under.' }),
          nodes: Type.Array(RedisNode, { minItems: 1, description: 'host:port of the sentinels.' }),
          username: Type.Optional(Type.String({ minLength: 1, description: "The sentinels' ACL user." })),
          password: Type.Optional(Type.String({ minLength: 1, description: "The sentinels' password." })),
          tls: Type.Boolean({ default: false, description: 'TLS to the sentinels.' }),
        },
        { additionalProperties: false },
      ),
    ),
    cluster: Type.Optional(
      Type.Object({ nodes: Type.Array(RedisNode, { minItems: 1, description: 'host:port of some cluster nodes (the rest are discovered).' }) }, { additionalProperties: false }),
    ),
    username: Type.Optional(Type.String({ minLength: 1, description: "With sentinel or cluster: the data nodes' ACL user (with url: in the URL)." })),
    password: Type.Optional(Type.String({ minLength: 1, description: "With sentinel or cluster: the data nodes' password (with url: in the URL)." })),
    tls: Type.Optional(Type.Boolean({ description: 'With sentinel or cluster: TLS to the data nodes (with url: rediss://).' })),
    db: Type.Optional(Type.Integer({ minimum: 0, description: 'With sentinel: the database number (with url: in the URL).' })),
    key_prefix: Type.String({ default: 'portcullis:', description: 'Prefix of every key Portcullis writes.' }),
    max_sessions_per_user: MaxSessionsPerUser,
    wait_replicas: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Replicas that must acknowledge a login or sign-out before it is answered (WAIT). Default 1 with sentinel, else 0.' }),
    ),
  },
  { additionalProperties: false },
);

// One of the two stores, chosen by `type`: a union in the static type, but if/then/else in the
// JSON schema, because Ajv does not apply defaults (path, key_prefix) inside anyOf, and so that
// errors name the chosen member's fields only (Ajv adds one 'must match "then" schema' line).
const SessionStoreConfig = Type.Unsafe<Static<typeof EmbeddedStore> | Static<typeof RedisStore>>({
  type: 'object',
  required: ['type'],
  properties: { type: Type.Union([Type.Literal('embedded'), Type.Literal('redis')]) },
  if: { properties: { type: { const: 'redis' } }, required: ['type'] },
  then: { ...RedisStore, properties: { ...RedisStore.properties, type: {} } },
  else: { ...EmbeddedStore, properties: { ...EmbeddedStore.properties, type: {} } },
  default: { type: 'embedded' },
});

const ListenAddress = Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]*):\\d{1,5}$' });
const Listener = Type.Union([ListenAddress, Type.Null()]);

export const OutpostSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, default: 'portcullis' }),
    listeners: Type.Object(
      {
        http: Type.Optional(Listener),
        https: Type.Optional(Listener),
        https_http2: Type.Boolean({ default: true, description: 'Offer HTTP/2 on the HTTPS listener (ALPN h2, with http/1.1 beside it); false: HTTP/1.1 only.' }),
      },
      { additionalProperties: false, default: {} },
    ),
    trusted_proxies: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description: 'CIDRs (or addresses) whose X-Forwarded-* headers are believed. Default: none.',
    }),
    tls: Type.Object({ certificates: Type.Array(TlsCertificate, { default: [] }) }, { additionalProperties: false, default: {} }),
    session_store: SessionStoreConfig,
    log_level: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info' },
    ),
    log_format: Type.Union([Type.Literal('json'), Type.Literal('pretty')], {
      default: 'json',
      description: 'json: one JSON object a line (pino). pretty: one readable line each, for a terminal.',
    }),
    upstream_timeout: Type.Integer({ minimum: 1, default: 30, description: 'Seconds to wait for an upstream response (then 504).' }),
    upstream_connections: Type.Integer({ minimum: 1, default: 128, description: 'Connections kept per upstream origin.' }),
    metrics: Type.Object(
      {
        listen: Type.Union([ListenAddress, Type.Null()], {
          default: null,
          description: 'host:port of the Prometheus /metrics listener (authentik uses 9300), or null for none. No authentication: bind it to a private address.',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    websockets: Type.Object(
      {
        idle_timeout: Type.Integer({ minimum: 1, default: 900, description: 'Seconds without a message, ping or pong either way before a proxied WebSocket is closed.' }),
        max_open: Type.Integer({ minimum: 1, default: 10000, description: 'Open WebSockets the outpost holds at most; an upgrade beyond gets 503.' }),
        session_check_interval: Type.Integer({ minimum: 1, default: 30, description: "Seconds between re-reads of each WebSocket's session in the store (a sign-out on another replica closes it)." }),
      },
      { additionalProperties: false, default: {} },
    ),
    shutdown_timeout: Type.Integer({
      minimum: 0,
      default: 25,
      description: 'Seconds SIGTERM/SIGINT waits for in-flight requests before cutting them (25: inside Kubernetes\' default 30 s grace period).',
    }),
    watch_config: Type.Boolean({ default: false, description: 'Reload when the config file changes, as on SIGHUP.' }),
    workers: Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 1, maximum: 256 })], {
      default: 'auto',
      description: 'Processes serving requests: auto = one per CPU this process may use (cgroup limits included), or a number. Several need a shared session store.',
    }),
  },
  { additionalProperties: false },
);

export const StageEntrySchema = Type.Object(
  {
    stage: Type.String({ minLength: 1, description: 'A built-in stage name, or a module specifier (npm package or path).' }),
    options: Type.Optional(Type.Unknown()),
    providers: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), Type.Record(Type.String(), Type.Unknown()), {
        description: "Options per provider, by provider name: merged over `options` (top-level keys replaced) for that provider's requests.",
      }),
    ),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    outpost: Type.Optional(OutpostSchema),
    providers: Type.Array(ProviderSchema, { minItems: 1 }),
    pipeline: Type.Optional(Type.Array(StageEntrySchema, { minItems: 1 })),
  },
  { additionalProperties: false },
);

export type ProviderConfig = Static<typeof ProviderSchema> & {
  mode: 'proxy' | 'forward_single' | 'forward_domain';
  access_token_validity: number | string;
  session_max_age: number | string;
};
export type OutpostConfig = Static<typeof OutpostSchema>;
export type StageEntry = Static<typeof StageEntrySchema>;
export interface PortcullisConfig {
  outpost: OutpostConfig;
  providers: ProviderConfig[];
  pipeline?: StageEntry[];
  /** Where the file was read from (for relative paths), or null for in-memory configs. */
  baseDir: string;
  /** The file's name, for error messages. */
  source?: string;
}
