// The OpenID Connect relying party of one provider.
//
// Discovery, authorization URLs, PKCE and end-session URLs come from openid-client. The code
// exchange goes through oauth4webapi (openid-client's own engine) because openid-client derives
// redirect_uri from the callback URL with its query removed, while authentik registers the
// callback *with* `?X-authentik-auth-callback=true`: the exchange must send the exact URI used in
// the authorization request. The ID token's signature is then verified against the provider's
// signing keys (ProviderKeys in jwks.ts, which refetches them when the provider rotates);
// oauth4webapi checks issuer, audience, expiry, nonce and azp.
import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';
import type { JWTVerifyOptions, JWTVerifyResult } from 'jose';
import { JwksUnavailable, ProviderKeys } from './jwks.js';
import type { Logger } from '../pipeline/logger.js';
import { OidcError } from './errors.js';
import { classifyTokenError } from './token-errors.js';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  authMethod: 'client_secret_basic' | 'client_secret_post';
  scopes: string[];
  /** Plain-http issuers are only allowed on loopback (demo and tests). */
  allowHttp: boolean;
  timeoutSeconds?: number;
}

export interface LoginResult {
  claims: Record<string, unknown> & { sub: string; iss: string };
  idToken: string;
  /** The access token when it is a JWT. */
  accessToken?: string;
  /** The access token whatever its form: for the userinfo request only, never stored. */
  bearerToken: string;
  /** The token response's `expires_in` (seconds), when given. */
  accessTokenExpiresIn?: number;
  /** The refresh token, when the provider issued one. */
  refreshToken?: string;
}

export { OidcError };

const RETRY_DISCOVERY_MS = 5000;

/** The parts of a token response beyond the tokens' own claims: refresh token and `expires_in`. */
function refreshPart(result: oauth.TokenEndpointResponse): { refreshToken?: string; accessTokenExpiresIn?: number } {
  return {
    refreshToken: typeof result.refresh_token === 'string' && result.refresh_token !== '' ? result.refresh_token : undefined,
    accessTokenExpiresIn: typeof result.expires_in === 'number' && result.expires_in >= 0 ? result.expires_in : undefined,
  };
}

export class OidcClient {
  private configuration: client.Configuration | null = null;
  private pending: Promise<client.Configuration> | null = null;
  private lastFailure = 0;
  private keys: ProviderKeys | null = null;

  constructor(
    readonly settings: OidcSettings,
    private readonly log: Logger,
  ) {}

  /** Whether discovery has succeeded (readiness). */
  get discovered(): boolean {
    return this.configuration !== null;
  }

  /** Discovery, done once and retried after a failure (the IdP may start after Portcullis). */
  async ready(): Promise<client.Configuration> {
    if (this.configuration) return this.configuration;
    if (this.pending) return this.pending;
    if (Date.now() - this.lastFailure < RETRY_DISCOVERY_MS && this.lastFailure !== 0) {
      throw new OidcError('oidc.discovery_failed', 'The identity provider could not be reached; try again shortly.', 503);
    }
    const s = this.settings;
    const auth = s.authMethod === 'client_secret_post' ? client.ClientSecretPost(s.clientSecret) : client.ClientSecretBasic(s.clientSecret);
    this.pending = client
      .discovery(new URL(s.issuer), s.clientId, { token_endpoint_auth_method: s.authMethod }, auth, {
        execute: s.allowHttp ? [client.allowInsecureRequests] : [],
        timeout: s.timeoutSeconds ?? 10,
      })
      .then((config) => {
        this.configuration = config;
        const jwksUri = config.serverMetadata().jwks_uri;
        if (jwksUri) this.keys = new ProviderKeys(new URL(jwksUri), this.log);
        this.log.info({ issuer: s.issuer }, 'OpenID Provider discovered');
        return config;
      })
      .catch((err: unknown) => {
        this.lastFailure = Date.now();
        this.log.error({ issuer: s.issuer, err: (err as Error).message }, 'OpenID Provider discovery failed');
        throw new OidcError('oidc.discovery_failed', 'The identity provider could not be reached; try again shortly.', 503);
      })
      .finally(() => {
        this.pending = null;
      });
    return this.pending;
  }

  async authorizationUrl(p: { redirectUri: string; state: string; nonce: string; codeVerifier: string }): Promise<URL> {
    const config = await this.ready();
    const supported = config.serverMetadata().scopes_supported;
    // Ask only for scopes the provider knows (authentik's defaults include `ak_proxy` and
    // `entitlements`, which another provider may refuse), but always `openid`.
    const scopes = this.settings.scopes.filter((sc) => sc === 'openid' || !supported || supported.includes(sc));
    if (!scopes.includes('openid')) scopes.unshift('openid');
    return client.buildAuthorizationUrl(config, {
      redirect_uri: p.redirectUri,
      scope: scopes.join(' '),
      state: p.state,
      nonce: p.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(p.codeVerifier),
      code_challenge_method: 'S256',
    });
  }

  async exchange(callbackParams: URLSearchParams, p: { redirectUri: string; expectedState: string; codeVerifier: string; nonce: string }): Promise<LoginResult> {
    const config = await this.ready();
    const as = config.serverMetadata() as oauth.AuthorizationServer;
    const c: oauth.Client = { client_id: this.settings.clientId, token_endpoint_auth_method: this.settings.authMethod };
    const clientAuth = this.settings.authMethod === 'client_secret_post' ? oauth.ClientSecretPost(this.settings.clientSecret) : oauth.ClientSecretBasic(this.settings.clientSecret);
    let params: URLSearchParams;
    try {
      params = oauth.validateAuthResponse(as, c, callbackParams, p.expectedState);
    } catch (err) {
      if (err instanceof oauth.AuthorizationResponseError) {
        throw new OidcError('oidc.authorization_error', `The identity provider refused the login: ${err.error}`, 403);
      }
      throw new OidcError('oidc.invalid_callback', `Invalid authorization response: ${(err as Error).message}`, 400);
    }
    const opts = { [oauth.allowInsecureRequests]: this.settings.allowHttp, signal: AbortSignal.timeout(10_000) };
    let result: oauth.TokenEndpointResponse;
    try {
      const response = await oauth.authorizationCodeGrantRequest(as, c, clientAuth, params, p.redirectUri, p.codeVerifier, opts);
      result = await oauth.processAuthorizationCodeResponse(as, c, response, { expectedNonce: p.nonce, requireIdToken: true });
    } catch (err) {
      // invalid_client, invalid_grant, … each get their own status and message (token-errors.ts).
      throw await classifyTokenError(err);
    }
    const idToken = result.id_token;
    if (!idToken || !this.keys) throw new OidcError('oidc.token_invalid', 'No ID token, or no JWKS to verify it.', 400);
    try {
      await this.keys.verify(idToken, { issuer: as.issuer, audience: this.settings.clientId });
    } catch (err) {
      if (err instanceof JwksUnavailable) throw new OidcError('oidc.jwks_unreachable', "The identity provider's signing keys could not be fetched.", 502);
      throw new OidcError('oidc.id_token_signature', `The ID token failed verification: ${(err as Error).message}`, 400);
    }
    const claims = oauth.getValidatedIdTokenClaims(result);
    if (!claims) throw new OidcError('oidc.token_invalid', 'ID token claims missing.', 400);
    const accessToken = typeof result.access_token === 'string' && result.access_token.split('.').length === 3 ? result.access_token : undefined;
    return { claims: claims as LoginResult['claims'], idToken, accessToken, bearerToken: result.access_token, ...refreshPart(result) };
  }

  /** The RP-initiated logout URL, or null when the provider has no end_session_endpoint. */
  endSessionUrl(p: { idTokenHint?: string; postLogoutRedirectUri: string; state?: string }): URL | null {
    const config = this.configuration;
    if (!config || !config.serverMetadata().end_session_endpoint) return null;
    const params: Record<string, string> = { post_logout_redirect_uri: p.postLogoutRedirectUri, client_id: this.settings.clientId };
    if (p.idTokenHint) params.id_token_hint = p.idTokenHint;
    if (p.state) params.state = p.state;
    return client.buildEndSessionUrl(config, params);
  }

  /**
   * Verifies a JWT signed by this provider against its signing keys (discovery first). Throws
   * JwksUnavailable when the keys cannot be fetched, jose's errors when the token is bad.
   * `options` should name the expected issuer and audience.
   */
  async verifyJwt(jwt: string, options: JWTVerifyOptions): Promise<JWTVerifyResult> {
    await this.ready();
    if (!this.keys) throw new JwksUnavailable('the identity provider publishes no jwks_uri');
    return this.keys.verify(jwt, options);
  }

  /** The provider's signing keys, once discovered (null before discovery or without jwks_uri). */
  get signingKeys(): ProviderKeys | null {
    return this.keys;
  }

  // --- Refresh and logout tokens (docs/sessions.md) --------------------------------------------

  /**
   * The refresh-token grant. A refusal by the provider (`invalid_grant`: revoked, expired, the
   * user locked out) is `oidc.refresh_refused`; not reaching it is `oidc.token_unreachable`. A new
   * ID token, when the provider sends one, is verified like at login and must name the same
   * subject (OpenID Connect Core §12.2).
   */
  async refresh(refreshToken: string, expectedSub: string): Promise<LoginResult | { claims: null; accessToken?: string; refreshToken?: string; accessTokenExpiresIn?: number }> {
    const config = await this.ready();
    const as = config.serverMetadata() as oauth.AuthorizationServer;
    const c: oauth.Client = { client_id: this.settings.clientId, token_endpoint_auth_method: this.settings.authMethod };
    const clientAuth = this.settings.authMethod === 'client_secret_post' ? oauth.ClientSecretPost(this.settings.clientSecret) : oauth.ClientSecretBasic(this.settings.clientSecret);
    const opts = { [oauth.allowInsecureRequests]: this.settings.allowHttp, signal: AbortSignal.timeout(10_000) };
    let result: oauth.TokenEndpointResponse;
    try {
      const response = await oauth.refreshTokenGrantRequest(as, c, clientAuth, refreshToken, opts);
      result = await oauth.processRefreshTokenResponse(as, c, response);
    } catch (err) {
      if (err instanceof oauth.ResponseBodyError) throw new OidcError('oidc.refresh_refused', `The identity provider refused the refresh: ${err.error}`, 401);
      if (err instanceof oauth.OperationProcessingError) throw new OidcError('oidc.token_invalid', `The identity provider's refresh response failed validation: ${err.message}`, 401);
      throw new OidcError('oidc.token_unreachable', 'The identity provider could not be reached for the refresh.', 502);
    }
    const accessToken = typeof result.access_token === 'string' && result.access_token.split('.').length === 3 ? result.access_token : undefined;
    const idToken = result.id_token;
    if (!idToken) return { claims: null, accessToken, ...refreshPart(result) };
    try {
      await this.verifyJwt(idToken, { issuer: as.issuer, audience: this.settings.clientId });
    } catch (err) {
      if (err instanceof JwksUnavailable) throw new OidcError('oidc.token_unreachable', "The identity provider's signing keys could not be fetched.", 502);
      throw new OidcError('oidc.id_token_signature', `The refreshed ID token failed verification: ${(err as Error).message}`, 401);
    }
    const claims = oauth.getValidatedIdTokenClaims(result);
    if (!claims || claims.sub !== expectedSub) throw new OidcError('oidc.token_invalid', 'The refreshed ID token names another subject.', 401);
    return { claims: claims as LoginResult['claims'], idToken, accessToken, bearerToken: result.access_token, ...refreshPart(result) };
  }

  /**
   * Verifies a JWT this provider signed for this client (signature against its JWKS, `iss`,
   * `aud`, `exp`/`nbf` when present, `iat` within `maxAgeSeconds`): logout tokens. Throws.
   */
  async verifyProviderJwt(token: string, opts: { maxAgeSeconds: number; clockToleranceSeconds: number }): Promise<Record<string, unknown>> {
    const config = await this.ready();
    // The same verifier as ID tokens: an unknown kid refetches the JWKS (key rotation).
    const { payload } = await this.verifyJwt(token, {
      issuer: config.serverMetadata().issuer,
      audience: this.settings.clientId,
      maxTokenAge: opts.maxAgeSeconds,
      clockTolerance: opts.clockToleranceSeconds,
      requiredClaims: ['iat'],
    });
    return payload as Record<string, unknown>;
  }

  /** The discovered end_session_endpoint, or null. */
  get endSessionEndpoint(): string | null {
    return this.configuration?.serverMetadata().end_session_endpoint ?? null;
  }

  /** The discovered issuer, or null before discovery succeeded. */
  get discoveredIssuer(): string | null {
    return this.configuration?.serverMetadata().issuer ?? null;
  }

  get jwksUri(): string {
    return this.configuration?.serverMetadata().jwks_uri ?? '';
  }
}
