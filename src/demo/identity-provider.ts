/**
 * A real OpenID Provider on loopback, built on `oidc-provider` v9.
 *
 * Used by the test-suite, the benchmarks and the `npm start` demo. It speaks the parts
 * of authentik's OpenID dialect that the proxy outpost relies on: authorization code flow
 * (PKCE S256, nonce), confidential clients (client_secret_basic / client_secret_post),
 * redirect URIs registered with a query string, the scopes
 * `openid profile email entitlements ak_proxy` with every granted claim inside the ID token,
 * RFC 7662 introspection whose answer carries the user's granted claims (as authentik's does),
 * and RP-initiated logout that needs no human judgement.
 *
 * NOT for production: everything is kept in memory and the signing key is generated on start.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { escapeHtml } from '../http/pages.js';

export interface IdpUser {
  username: string;
  password: string;
  /** Subject; default: sha256 hex of the username. */
  sub?: string;
  name?: string;
  email?: string;
  groups?: string[];
  entitlements?: string[];
  /** e.g. `{ user_attributes: { additionalHeaders: { 'X-Team': 'platform' } }, backend_override: 'http://...' }` */
  ak_proxy?: Record<string, unknown>;
  /** Claims in any shape, replacing the ones above (e.g. `{ groups: 'users', email_verified: 'true' }`). */
  claims?: Record<string, unknown>;
}

export interface IdpClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
  /** Shown on the login page ("to continue to …"); default the client_id. */
  client_name?: string;
  token_endpoint_auth_method?: 'client_secret_basic' | 'client_secret_post';
  /** Issue refresh tokens to this client (as authentik does when offline_access is asked for). */
  refresh_tokens?: boolean;
  /** OpenID Connect Back-Channel Logout 1.0: the IdP POSTs a logout token here (with sid). */
  backchannel_logout_uri?: string;
  /**
   * OpenID Connect Front-Channel Logout 1.0 (which oidc-provider 9 lacks, so this IdP does it as
   * LemonLDAP::NG does): its logout page frames this URL with `iss` and `sid`.
   */
  frontchannel_logout_uri?: string;
}

export interface StartIdpOptions {
  /** 0 = random. */
  port?: number;
  /** Bind address, default 127.0.0.1. */
  host?: string;
  /** Default `http://127.0.0.1:<port>`. */
  issuer?: string;
  clients: IdpClient[];
  /** Default {@link DEMO_USERS}. */
  users?: IdpUser[];
  idTokenTtlSeconds?: number;
  /** Lifetime of access tokens (the token response's expires_in); default 3600. */
  accessTokenTtlSeconds?: number;
  /** Text shown prominently on the login page, e.g. "Portcullis demo". */
  banner?: string;
  /**
   * Serve the user's claims only at userinfo, as LemonLDAP::NG does by default: the ID token
   * carries only the protocol claims (oidc-provider's `conformIdTokenClaims`) and introspection
   * answers carry none of the user's claims.
   */
  claimsAtUserinfoOnly?: boolean;
  /**
   * Issue access tokens as JWTs (RFC 9068, `aud` = the client, signed with the current key) and
   * introspect them, as authentik does; default: opaque tokens.
   */
  jwtAccessTokens?: boolean;
  /** List the users and their passwords on the login page (the demo's fixed accounts). */
  showAccounts?: boolean;
}

export interface RunningIdp {
  issuer: string;
  port: number;
  close(): Promise<void>;
  /** Add or replace (by username) a user at run time. */
  setUser(user: IdpUser): void;
  /** How many requests reached the introspection endpoint so far (tests of callers' caches). */
  readonly introspections: number;
  /** How many requests reached the userinfo endpoint so far. */
  readonly userinfoRequests: number;
  /** How many requests reached the jwks_uri so far. */
  readonly jwksFetches: number;
  /**
   * A key rotation: a new signing key signs from now on; the old ones stay published (as a
   * real provider keeps them until the tokens they signed expire). Returns the new key id.
   */
  rotateKeys(): Promise<string>;
  /** Token requests with grant_type=refresh_token so far, answered or refused. */
  readonly refreshes: number;
  /** Back-channel logout deliveries: each relying party's answer, or the error. */
  readonly backchannelResults: ReadonlyArray<{ clientId: string; ok: boolean; error?: string }>;
  /** Tests only: a JWT signed with this IdP's own key (to build logout tokens with chosen claims). */
  signJwt(payload: JWTPayload, typ?: string): Promise<string>;
}

export const DEMO_USERS: IdpUser[] = [
  {
    username: 'alice',
    password: 'alice',
    name: 'Alice Demo',
    email: 'alice@example.com',
    groups: ['admins', 'staff'],
    entitlements: ['reports:read', 'reports:write'],
    ak_proxy: {
      user_attributes: {
        additionalHeaders: { 'X-Demo-Team': 'platform', 'X-Demo-Level': 3 },
      },
    },
  },
  {
    username: 'bob',
    password: 'bob',
    name: 'Bob Demo',
    email: 'bob@example.com',
    groups: ['staff'],
    entitlements: [],
  },
];

/** The resource indicator of the JWT access tokens (jwtAccessTokens). */
const JWT_RESOURCE = 'urn:portcullis:test-idp:api';

export const IDP_SCOPES = ['openid', 'profile', 'email', 'entitlements', 'ak_proxy', 'offline_access'] as const;

/** The claims each scope grants (in the ID token, and in introspection answers of access tokens). */
const CLAIMS_BY_SCOPE: Record<string, string[]> = {
  openid: ['sub'],
  profile: ['name', 'preferred_username', 'given_name', 'nickname', 'groups'],
  email: ['email', 'email_verified'],
  entitlements: ['entitlements'],
  ak_proxy: ['ak_proxy'],
};

// ---------------------------------------------------------------------------------------------
// Loading oidc-provider (ships no type declarations; prints a runtime warning on Node 20).
// ---------------------------------------------------------------------------------------------

/* eslint-disable @typescript-eslint/no-explicit-any */
type AnyObj = any;

interface ProviderModule {
  Provider: new (issuer: string, config: Record<string, unknown>) => AnyObj;
  errors: Record<string, new (...args: unknown[]) => Error>;
}

/** The embedded identity provider cannot run here (oidc-provider is not installed). */
export class DemoUnavailableError extends Error {
  override readonly name = 'DemoUnavailableError';
}

let providerModule: Promise<ProviderModule> | undefined;

function loadProviderModule(): Promise<ProviderModule> {
  if (!providerModule) {
    providerModule = (async () => {
      const originalWarn = console.warn;
      console.warn = (...args: unknown[]) => {
        if (typeof args[0] === 'string' && args[0].includes('Unsupported runtime')) return;
        originalWarn.apply(console, args as []);
      };
      try {
        // A non-literal specifier: the package has no type declarations.
        const specifier: string = 'oidc-provider';
        return (await import(specifier)) as ProviderModule;
      } catch (err) {
        // A development dependency: absent after `npm ci --omit=dev` or a global install.
        if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes("'oidc-provider'")) {
          throw new DemoUnavailableError(
            'the demo needs the package oidc-provider, a development dependency: run `npm ci` without --omit=dev in a checkout, or `npm install oidc-provider@9` next to Portcullis',
          );
        }
        throw err;
      } finally {
        console.warn = originalWarn;
      }
    })();
  }
  return providerModule;
}

let signingJwks: Promise<{ keys: Record<string, unknown>[] }> | undefined;

async function newSigningKey(): Promise<Record<string, unknown>> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg: 'RS256', use: 'sig', kid: `portcullis-demo-${randomBytes(4).toString('hex')}` };
}

/** One RS256 signing key per process (generating RSA keys is slow-ish); rotateKeys() adds more. */
function getSigningJwks(): Promise<{ keys: Record<string, unknown>[] }> {
  signingJwks ??= newSigningKey().then((key) => ({ keys: [key] }));
  return signingJwks;
}

// ---------------------------------------------------------------------------------------------
// In-memory adapter, one store per IdP instance (no timers, no global state).
// ---------------------------------------------------------------------------------------------

interface StoredEntry {
  payload: Record<string, unknown>;
  expiresAt: number | undefined;
}

function createMemoryAdapterClass() {
  const store = new Map<string, StoredEntry>();
  const byGrant = new Map<string, Set<string>>();
  const byUid = new Map<string, string>();
  const byUserCode = new Map<string, string>();

  const live = (key: string): StoredEntry | undefined => {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry;
  };

  return class MemoryAdapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    private key(id: string): string {
      return `${this.model}:${id}`;
    }

    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
      const key = this.key(id);
      store.set(key, { payload: { ...payload }, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
      const { grantId, uid, userCode } = payload as { grantId?: string; uid?: string; userCode?: string };
      if (grantId) {
        let set = byGrant.get(grantId);
        if (!set) byGrant.set(grantId, (set = new Set()));
        set.add(key);
      }
      if (uid) byUid.set(uid, id);
      if (userCode) byUserCode.set(userCode, id);
    }

    async find(id: string): Promise<Record<string, unknown> | undefined> {
      const entry = live(this.key(id));
      return entry ? { ...entry.payload } : undefined;
    }

    async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
      const id = byUid.get(uid);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined> {
      const id = byUserCode.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id: string): Promise<void> {
      const entry = live(this.key(id));
      if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id: string): Promise<void> {
      const key = this.key(id);
      const entry = store.get(key);
      store.delete(key);
      const uid = entry?.payload.uid;
      if (typeof uid === 'string') byUid.delete(uid);
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      const keys = byGrant.get(grantId);
      if (keys) for (const key of keys) store.delete(key);
      byGrant.delete(grantId);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

const STYLE = `body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0;padding:40px 16px;color:#111}
.card{max-width:380px;margin:0 auto;background:#fff;border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.12);padding:24px 28px}
.banner{max-width:380px;margin:0 auto 16px;background:#fde68a;border:1px solid #d97706;border-radius:6px;padding:10px 14px;font-weight:600;text-align:center}
h1{font-size:1.4em;margin:0 0 16px}label{display:block;margin:10px 0 4px;font-size:.9em}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:8px;font-size:1em;border:1px solid #bbb;border-radius:4px}
button{margin-top:16px;width:100%;padding:10px;font-size:1em;background:#2563eb;color:#fff;border:0;border-radius:4px;cursor:pointer}
.error{background:#fee2e2;color:#991b1b;border-radius:4px;padding:8px;margin-bottom:8px}.muted{color:#555;font-size:.85em}
.accounts{margin-top:18px;border-top:1px solid #e5e7eb;padding-top:8px}.accounts ul{margin:4px 0;padding-left:20px}`;

function page(title: string, banner: string | undefined, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${banner ? `<div class="banner" id="banner">${escapeHtml(banner)}</div>\n` : ''}<div class="card">
${body}
</div>
</body>
</html>
`;
}

function accountsHint(users: readonly IdpUser[]): string {
  const rows = users
    .map((u) => `<li><code>${escapeHtml(u.username)}</code> / <code>${escapeHtml(u.password)}</code>${u.groups?.length ? ` <span class="muted">(groups ${escapeHtml(u.groups.join(', '))})</span>` : ''}</li>`)
    .join('');
  return `<div class="accounts" id="demo-accounts"><p class="muted">Demo accounts (user / password):</p><ul>${rows}</ul></div>`;
}

function loginPage(opts: { action: string; banner?: string; clientId?: string; username?: string; error?: string; accounts?: string }): string {
  return page(
    opts.banner ? `Sign in – ${opts.banner}` : 'Sign in',
    opts.banner,
    `<h1>Sign in</h1>
${opts.error ? `<div class="error" id="error" role="alert">${escapeHtml(opts.error)}</div>` : ''}
${opts.clientId ? `<p class="muted">to continue to <strong>${escapeHtml(opts.clientId)}</strong></p>` : ''}
<form method="post" action="${escapeHtml(opts.action)}" id="login-form" autocomplete="off">
<label for="username">Username</label>
<input type="text" name="username" id="username" value="${escapeHtml(opts.username ?? '')}" autofocus required>
<label for="password">Password</label>
<input type="password" name="password" id="password" required>
<button type="submit" id="login">Sign in</button>
</form>
${opts.accounts ?? ''}`,
  );
}

function readBody(req: http.IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/** A request whose body was read, as a fresh readable request for the next handler. */
function replayed(req: http.IncomingMessage, body: Buffer): http.IncomingMessage {
  const copy = new http.IncomingMessage(req.socket);
  copy.method = req.method;
  copy.url = req.url;
  copy.headers = req.headers;
  copy.rawHeaders = req.rawHeaders;
  copy.httpVersion = req.httpVersion;
  copy.httpVersionMajor = req.httpVersionMajor;
  copy.httpVersionMinor = req.httpVersionMinor;
  // Complete: otherwise its end counts as an abort, which destroys the shared socket.
  copy.complete = true;
  copy.push(body);
  copy.push(null);
  return copy;
}

function sendHtml(res: http.ServerResponse, status: number, html: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(html));
  res.end(html);
}

// ---------------------------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------------------------

export function defaultSub(username: string): string {
  return createHash('sha256').update(username).digest('hex');
}

function claimsOf(user: IdpUser & { sub: string }): Record<string, unknown> {
  const name = user.name ?? user.username;
  const claims: Record<string, unknown> = {
    sub: user.sub,
    name,
    preferred_username: user.username,
    given_name: name,
    nickname: user.username,
    groups: [...(user.groups ?? [])],
    email: user.email ?? `${user.username}@example.com`,
    email_verified: true,
    entitlements: [...(user.entitlements ?? [])],
  };
  if (user.ak_proxy) claims.ak_proxy = user.ak_proxy;
  return { ...claims, ...user.claims };
}

function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export async function startIdentityProvider(opts: StartIdpOptions): Promise<RunningIdp> {
  const host = opts.host ?? '127.0.0.1';
  const banner = opts.banner;
  const { Provider } = await loadProviderModule();
  /** Newest first: oidc-provider signs with the first key that fits. */
  let signingKeys = [...(await getSigningJwks()).keys];

  // Users, indexed by username and by subject.
  const byUsername = new Map<string, IdpUser & { sub: string }>();
  const bySub = new Map<string, IdpUser & { sub: string }>();
  const setUser = (user: IdpUser): void => {
    const full = { ...user, sub: user.sub ?? defaultSub(user.username) };
    const previous = byUsername.get(user.username);
    if (previous) bySub.delete(previous.sub);
    byUsername.set(full.username, full);
    bySub.set(full.sub, full);
  };
  for (const user of opts.users ?? DEMO_USERS) setUser(user);

  // Bind first: the default issuer needs the port.
  let handler: http.RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  server.keepAliveTimeout = 5_000;
  const port = await listen(server, opts.port ?? 0, host);
  const issuer = (opts.issuer ?? `http://127.0.0.1:${port}`).replace(/\/+$/, '');

  const idTokenTtl = opts.idTokenTtlSeconds ?? 3600;

  const clientNames = new Map(opts.clients.filter((c) => c.client_name).map((c) => [c.client_id, c.client_name!]));
  const clients = opts.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
    ...(c.backchannel_logout_uri ? { backchannel_logout_uri: c.backchannel_logout_uri, backchannel_logout_session_required: true } : {}),
    ...(c.frontchannel_logout_uri ? { frontchannel_logout_uri: c.frontchannel_logout_uri, frontchannel_logout_session_required: true } : {}),
  }));
  const refreshClients = new Set(opts.clients.filter((c) => c.refresh_tokens).map((c) => c.client_id));
  const frontchannelUris = new Map(opts.clients.filter((c) => c.frontchannel_logout_uri).map((c) => [c.client_id, c.frontchannel_logout_uri!]));

  const knownScopes = new Set<string>(IDP_SCOPES);

  // The configuration of every provider instance; a key rotation makes a new instance with
  // another keystore, sharing the adapter (grants, sessions, codes) and the cookie keys.
  const providerConfig: Record<string, unknown> = {
    adapter: createMemoryAdapterClass(),
    clients,
    cookies: {
      keys: [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')],
      long: { httpOnly: true, sameSite: 'lax', secure: false },
      short: { httpOnly: true, sameSite: 'lax', secure: false },
    },
    scopes: [...IDP_SCOPES],
    claims: CLAIMS_BY_SCOPE,
    // authentik's "include claims in id_token": every claim of the granted scopes goes into the ID
    // token, unless the claims are to be served only at userinfo.
    conformIdTokenClaims: opts.claimsAtUserinfoOnly === true,
    pkce: { required: () => false },
    extraClientMetadata: { properties: ['frontchannel_logout_uri', 'frontchannel_logout_session_required'] },
    // authentik's behaviour: a client allowed refresh tokens gets one with the code exchange
    // (oidc-provider's default also needs offline_access with prompt=consent).
    issueRefreshToken: async (_ctx: unknown, client: AnyObj) => refreshClients.has(client.clientId) && client.grantTypeAllowed('refresh_token'),
    // The relying parties are on loopback: without the SSRF guard's dispatcher, which refuses
    // loopback and private addresses, the back-channel logout POST could not reach them.
    fetch: (url: string | URL, options: Record<string, unknown>) => {
      const { dispatcher: _guard, ...rest } = options;
      return globalThis.fetch(url, rest as RequestInit);
    },
    features: {
      backchannelLogout: { enabled: true },
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx: AnyObj, form: string) => {
          // No human judgement needed: the form always signs out of the IdP (hidden logout=yes),
          // has a visible submit button id="logout" and submits itself.
          const fullForm = form.replace(
            '</form>',
            '<input type="hidden" name="logout" value="yes"/>' +
              '<p>You are being signed out…</p>' +
              '<button type="submit" id="logout">Sign out</button></form>',
          );
          // Front-channel logout: one iframe per relying party of this IdP session that
          // registered a frontchannel_logout_uri; the form is submitted once all have loaded.
          const frames: string[] = [];
          const authorizations = (ctx.oidc.session?.authorizations ?? {}) as Record<string, { sid?: string }>;
          for (const [clientId, auth] of Object.entries(authorizations)) {
            const uri = frontchannelUris.get(clientId);
            if (!uri || !auth.sid) continue;
            const u = new URL(uri);
            u.searchParams.set('iss', issuer);
            u.searchParams.set('sid', auth.sid);
            frames.push(`<iframe class="frontchannel-logout" src="${escapeHtml(u.href)}" width="200" height="60"></iframe>`);
          }
          const submit = frames.length === 0
            ? "document.getElementById('op.logoutForm').submit();"
            : `let left=${frames.length};for(const f of document.querySelectorAll('iframe.frontchannel-logout'))f.addEventListener('load',()=>{if(--left===0)document.getElementById('op.logoutForm').submit()});`;
          ctx.type = 'html';
          ctx.body = page(
            banner ? `Sign out – ${banner}` : 'Sign out',
            banner,
            `<h1>Sign out</h1>\n${frames.join('\n')}\n${fullForm}\n<script>${submit}</script>`,
          );
        },
        postLogoutSuccessSource: async (ctx: AnyObj) => {
          ctx.type = 'html';
          ctx.body = page('Signed out', banner, '<h1>Signed out</h1><p id="signed-out">You have been signed out.</p>');
        },
      },
      revocation: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: AnyObj) => client.clientAuthMethod !== 'none',
      },
      userinfo: { enabled: true },
      // JWT access tokens: every authorization gets the one resource server, whose tokens are
      // JWTs for the client itself (authentik's shape: aud = client_id).
      ...(opts.jwtAccessTokens
        ? {
            resourceIndicators: {
              enabled: true,
              defaultResource: async () => JWT_RESOURCE,
              useGrantedResource: async () => true,
              getResourceServerInfo: async (_ctx: unknown, _resource: string, client: AnyObj) => ({
                scope: IDP_SCOPES.join(' '),
                audience: client.clientId,
                accessTokenFormat: 'jwt',
                jwt: { sign: { alg: 'RS256' } },
              }),
            },
          }
        : {}),
    },
    ttl: {
      AccessToken: opts.accessTokenTtlSeconds ?? 3600,
      AuthorizationCode: 120,
      ClientCredentials: 600,
      IdToken: idTokenTtl,
      Interaction: 3600,
      RefreshToken: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    clientBasedCORS: (_ctx: unknown, origin: string, client: AnyObj) =>
      origin !== 'null' &&
      (client.redirectUris as string[]).some((uri) => {
        try {
          return new URL(uri).origin === origin;
        } catch {
          return false;
        }
      }),
    interactions: {
      url: async (_ctx: unknown, interaction: AnyObj) => `/interaction/${interaction.uid}`,
    },
    async findAccount(_ctx: unknown, sub: string) {
      const user = bySub.get(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        async claims() {
          return claimsOf(bySub.get(sub) ?? user);
        },
      };
    },
    // As authentik's introspection answers with the token's ID-token claims: an access token of
    // a user carries that user's claims of the granted scopes (never client_id, exp, …: the
    // provider sets those after these). Opaque tokens keep them server-side.
    async extraTokenClaims(_ctx: unknown, token: AnyObj) {
      if (token.kind !== 'AccessToken' || typeof token.accountId !== 'string' || opts.claimsAtUserinfoOnly) return undefined;
      const user = bySub.get(token.accountId);
      if (!user) return undefined;
      const all = claimsOf(user);
      const out: Record<string, unknown> = {};
      for (const scope of String(token.scope ?? '').split(' ')) {
        for (const name of CLAIMS_BY_SCOPE[scope] ?? []) if (name !== 'sub' && all[name] !== undefined) out[name] = all[name];
      }
      return out;
    },
    // No consent screen: grant every requested (known) scope automatically.
    async loadExistingGrant(ctx: AnyObj) {
      const { oidc } = ctx;
      const accountId = oidc.session?.accountId;
      if (!accountId || !oidc.client) return undefined;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (grant && grant.accountId !== accountId) grant = undefined;
      if (!grant) grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId });
      const requested = String(oidc.params?.scope ?? 'openid')
        .split(' ')
        .filter((s: string) => knownScopes.has(s));
      if (requested.length) grant.addOIDCScope(requested.join(' '));
      await grant.save();
      return grant;
    },
    renderError: async (ctx: AnyObj, out: Record<string, unknown>) => {
      ctx.type = 'html';
      ctx.body = page(
        'Sign-in error',
        banner,
        `<h1>Something went wrong</h1>${Object.entries(out)
          .map(([k, v]) => `<p><strong>${escapeHtml(k)}</strong>: <span class="${escapeHtml(k)}">${escapeHtml(v)}</span></p>`)
          .join('')}`,
      );
    },
  };
  let refreshes = 0;
  const countRefresh = (ctx: AnyObj) => {
    if (ctx?.oidc?.params?.grant_type === 'refresh_token') refreshes++;
  };
  const backchannelResults: { clientId: string; ok: boolean; error?: string }[] = [];
  const createProvider = (): AnyObj => {
    const instance = new Provider(issuer, { ...providerConfig, jwks: { keys: signingKeys.map((k) => ({ ...k })) } });
    // Errors are rendered to the client already; keep the console quiet.
    instance.on('server_error', () => {});
    instance.silent = true;
    instance.on('grant.success', countRefresh);
    instance.on('grant.error', countRefresh);
    instance.on('backchannel.success', (_ctx: unknown, client: AnyObj) => backchannelResults.push({ clientId: client.clientId, ok: true }));
    instance.on('backchannel.error', (_ctx: unknown, err: Error & { cause?: Error }, client: AnyObj) =>
      backchannelResults.push({ clientId: client.clientId, ok: false, error: `${err.message}${err.cause ? `: ${err.cause.message}` : ''}` }),
    );
    // The ID token carries `sid` for front-channel clients too (oidc-provider adds it only for
    // back-channel ones), as front-channel logout with frontchannel_logout_session_required needs.
    const clientProto = instance.Client.prototype as { includeSid(this: AnyObj): boolean };
    const includeSid = clientProto.includeSid;
    clientProto.includeSid = function (this: AnyObj) {
      return includeSid.call(this) || frontchannelUris.has(this.clientId);
    };
    return instance;
  };
  let provider = createProvider();
  let providerCallback = provider.callback() as http.RequestListener;
  const rotateKeys = async (): Promise<string> => {
    const key = await newSigningKey();
    signingKeys = [key, ...signingKeys];
    provider = createProvider();
    providerCallback = provider.callback() as http.RequestListener;
    return key.kid as string;
  };

  const interactionRoute = /^\/interaction\/([A-Za-z0-9_-]+)\/?$/;

  async function grantConsent(req: http.IncomingMessage, res: http.ServerResponse, details: AnyObj): Promise<void> {
    const { prompt, params, session } = details;
    let grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (!grant) grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missingScope: string[] | undefined = prompt.details?.missingOIDCScope;
    if (missingScope?.length) grant.addOIDCScope(missingScope.join(' '));
    const missingClaims: string[] | undefined = prompt.details?.missingOIDCClaims;
    if (missingClaims?.length) grant.addOIDCClaims(missingClaims);
    const missingResourceScopes: Record<string, string[]> | undefined = prompt.details?.missingResourceScopes;
    if (missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missingResourceScopes)) grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  async function handleInteraction(req: http.IncomingMessage, res: http.ServerResponse, uid: string): Promise<void> {
    let details: AnyObj;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (err) {
      sendHtml(
        res,
        400,
        page('Sign-in error', banner, `<h1>Sign-in session expired</h1><p>${escapeHtml((err as Error).message)}</p><p>Go back to the application and try again.</p>`),
      );
      return;
    }
    if (details.uid !== uid) {
      sendHtml(res, 400, page('Sign-in error', banner, '<h1>Sign-in session mismatch</h1><p>Go back to the application and try again.</p>'));
      return;
    }
    const action = `/interaction/${uid}`;
    const clientIdParam: string | undefined = details.params?.client_id;
    // The application's name when the client has one (the demo's), else its client_id.
    const clientId = clientIdParam === undefined ? undefined : (clientNames.get(clientIdParam) ?? clientIdParam);
    const accounts = opts.showAccounts ? accountsHint([...byUsername.values()]) : undefined;

    if (details.prompt.name === 'consent') {
      await grantConsent(req, res, details);
      return;
    }
    if (details.prompt.name !== 'login') {
      sendHtml(res, 400, page('Sign-in error', banner, `<h1>Unsupported prompt</h1><p>${escapeHtml(details.prompt.name)}</p>`));
      return;
    }

    if (req.method === 'GET' || req.method === 'HEAD') {
      sendHtml(res, 200, loginPage({ action, banner, clientId, accounts }));
      return;
    }
    if (req.method !== 'POST') {
      res.statusCode = 405;
      res.setHeader('Allow', 'GET, POST');
      res.end();
      return;
    }
    const form = new URLSearchParams(await readBody(req));
    const username = form.get('username') ?? '';
    const password = form.get('password') ?? '';
    const user = byUsername.get(username);
    const ok =
      user !== undefined &&
      createHash('sha256').update(password).digest().equals(createHash('sha256').update(user.password).digest());
    if (!ok) {
      sendHtml(res, 401, loginPage({ action, banner, clientId, username, accounts, error: 'Invalid username or password.' }));
      return;
    }
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: user.sub ?? defaultSub(user.username), remember: true } },
      { mergeWithLastSubmission: false },
    );
  }

  let introspections = 0;
  let userinfoRequests = 0;
  let jwksFetches = 0;
  handler = (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/token/introspection') introspections++;
    if (path === '/me') userinfoRequests++;
    if (path === '/jwks') jwksFetches++;
    if (opts.jwtAccessTokens && path === '/token/introspection' && req.method === 'POST') {
      introspectJwtOrPass(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: (err as Error).message });
        else res.destroy();
      });
      return;
    }
    const match = interactionRoute.exec(path);
    if (match) {
      handleInteraction(req, res, match[1]!).catch((err: unknown) => {
        if (!res.headersSent) {
          sendHtml(res, 500, page('Error', banner, `<h1>Internal error</h1><p>${escapeHtml((err as Error)?.message ?? err)}</p>`));
        } else {
          res.destroy();
        }
      });
      return;
    }
    providerCallback(req, res);
  };

  // oidc-provider refuses to introspect JWT access tokens (it does not store them); authentik
  // introspects its own. A JWT is answered here: client authenticated as at the token endpoint,
  // then active with the token's claims when it verifies against the IdP's keys and is unexpired
  // (like oidc-provider's opaque answers, for any client's token: the caller must check
  // client_id). Anything else goes on to oidc-provider with its body replayed.
  async function introspectJwtOrPass(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = Buffer.from(await readBody(req));
    const form = new URLSearchParams(body.toString('utf8'));
    const token = form.get('token') ?? '';
    let header: { alg?: unknown } | null = null;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      header = null;
    }
    if (header === null) {
      providerCallback(replayed(req, body), res);
      return;
    }
    let clientId = form.get('client_id') ?? '';
    let secret = form.get('client_secret') ?? '';
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (basic) {
      const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      clientId = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
      secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
    }
    if (!clients.some((c) => c.client_id === clientId && c.client_secret === secret)) {
      sendJson(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' });
      return;
    }
    const publicKeys = createLocalJWKSet({ keys: signingKeys.map(({ d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub }) => pub as JWK) });
    try {
      const { payload } = await jwtVerify(token, publicKeys, { issuer, typ: 'at+jwt' });
      sendJson(res, 200, { ...payload, active: true, token_type: 'Bearer' });
    } catch {
      sendJson(res, 200, { active: false });
    }
  }

  let closed: Promise<void> | undefined;
  return {
    issuer,
    port,
    setUser,
    get introspections() {
      return introspections;
    },
    get userinfoRequests() {
      return userinfoRequests;
    },
    get jwksFetches() {
      return jwksFetches;
    },
    rotateKeys,
    get refreshes() {
      return refreshes;
    },
    backchannelResults,
    async signJwt(payload: JWTPayload, typ = 'logout+jwt') {
      const jwk = signingKeys[0]! as { kid: string };
      const key = await importJWK(jwk as Parameters<typeof importJWK>[0], 'RS256');
      return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ }).sign(key);
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
