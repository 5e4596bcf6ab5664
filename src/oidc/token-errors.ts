// What went wrong at the token endpoint, precisely. RFC 6749 §5.2 error codes (invalid_client,
// invalid_grant, unauthorized_client, …) become a TokenEndpointError with a status that fits the
// cause, a message for the user (generic: the user cannot fix the provider's configuration) and
// one for an administrator (what the provider said and what to check). "Unreachable" is said only
// when no HTTP answer came back at all. A refused client authentication with client_secret_basic
// comes back as 401 with WWW-Authenticate (RFC 6749 §5.2): its body (or the challenge) still
// names the error, and so does the page.
import * as oauth from 'oauth4webapi';
import { OidcError } from './errors.js';

export class TokenEndpointError extends OidcError {
  constructor(
    code: string,
    /** For the user (generic). */
    message: string,
    status: number,
    /** For an administrator: what the provider said and what to check. */
    readonly adminMessage: string,
    /** The provider's `error`, or null when it gave none (or could not be reached). */
    readonly providerError: string | null,
    readonly providerDescription: string | null,
    /** The token endpoint's HTTP status, or null when there was no answer. */
    readonly providerStatus: number | null,
  ) {
    super(code, message, status);
    this.name = 'TokenEndpointError';
  }
}

const USER_MESSAGE = 'The identity provider did not complete the login for this application. Please tell the administrator, quoting the request id below.';

interface Known {
  status: number;
  user?: string;
  admin: string;
}

const KNOWN: Record<string, Known> = {
  invalid_client: {
    status: 502,
    admin:
      "The identity provider refused Portcullis's client authentication. Check client_id, client_secret and token_endpoint_auth_method of this provider against the client registered at the provider. " +
      'Some providers (LemonLDAP::NG) do not form-decode client_secret_basic credentials, so a client id or secret containing - _ . or ~ fails there: use client_secret_post.',
  },
  unauthorized_client: {
    status: 502,
    admin: 'The client registered at the identity provider may not use the authorization code grant. Allow it for this client at the provider.',
  },
  unsupported_grant_type: {
    status: 502,
    admin: 'The identity provider does not support the authorization code grant for this client. Enable it at the provider.',
  },
  invalid_grant: {
    status: 400,
    user: 'This login response could no longer be used (it expired or was already used). Start again.',
    admin:
      'The identity provider refused the authorization code: it expired or was already used, or the redirect URI or the PKCE verifier do not match. The redirect URI registered at the provider must be exactly this application\'s callback URL.',
  },
  invalid_scope: {
    status: 502,
    admin: 'The identity provider refused the requested scopes. Check scopes_to_request of this provider against the scopes the client may use at the provider.',
  },
  invalid_request: {
    status: 502,
    admin: 'The identity provider found the token request malformed or missing a parameter (often PKCE or the redirect URI). Its description below says which.',
  },
  access_denied: {
    status: 403,
    user: 'The identity provider denied access to this application.',
    admin: 'The identity provider denied the token request (access_denied): check the access policy of this client at the provider.',
  },
  temporarily_unavailable: {
    status: 503,
    user: 'The identity provider is temporarily unavailable. Try again in a moment.',
    admin: 'The identity provider said it is temporarily unavailable.',
  },
  server_error: {
    status: 502,
    admin: 'The identity provider failed with an internal error while answering the token request. Its logs say why.',
  },
};

/** Control characters removed, at most 500 characters: the provider's text goes to a page and a log. */
function clean(s: unknown): string | null {
  if (typeof s !== 'string' || s === '') return null;
  const t = s.replace(/[\x00-\x1f\x7f]/g, ' ').trim();
  return t.length > 500 ? t.slice(0, 500) + '…' : t;
}

function fromProvider(error: string, description: string | null, httpStatus: number): TokenEndpointError {
  const known = KNOWN[error];
  const said = `The token endpoint answered HTTP ${httpStatus} with error "${error}"${description ? `: ${description}` : ''}.`;
  return new TokenEndpointError(
    `oidc.token_${known ? error : 'error'}`,
    known?.user ?? USER_MESSAGE,
    known?.status ?? 502,
    `${said} ${known?.admin ?? 'Its description says why.'}`,
    error,
    description,
    httpStatus,
  );
}

/** The TokenEndpointError for whatever the code exchange threw. */
export async function classifyTokenError(err: unknown): Promise<TokenEndpointError> {
  if (err instanceof oauth.ResponseBodyError) {
    return fromProvider(clean(err.error) ?? 'unknown', clean(err.error_description), err.status);
  }
  if (err instanceof oauth.WWWAuthenticateChallengeError) {
    // The body usually names the error (RFC 6749 §5.2); else the challenge may, else a 401 is
    // a refused client authentication.
    let error: string | null = null;
    let description: string | null = null;
    try {
      const body = (await err.response.json()) as Record<string, unknown>;
      error = clean(body.error);
      description = clean(body.error_description);
    } catch {
      // not JSON: the challenge is all there is
    }
    const params = err.cause.find((c) => c.parameters.error !== undefined)?.parameters;
    error ??= clean(params?.error);
    description ??= clean(params?.error_description);
    return fromProvider(error ?? (err.status === 401 ? 'invalid_client' : 'unknown'), description, err.status);
  }
  if (err instanceof oauth.OperationProcessingError && err.code === oauth.RESPONSE_IS_NOT_CONFORM && err.cause instanceof Response) {
    const status = err.cause.status;
    return new TokenEndpointError(
      'oidc.token_http_error',
      USER_MESSAGE,
      502,
      `The token endpoint answered HTTP ${status} without an OAuth error. Check the provider's logs and the token endpoint in its discovery document.`,
      null,
      null,
      status,
    );
  }
  if (err instanceof oauth.OperationProcessingError) {
    return new TokenEndpointError(
      'oidc.token_invalid',
      USER_MESSAGE,
      400,
      `The token endpoint's answer failed validation: ${clean(err.message) ?? 'unknown reason'}.`,
      null,
      null,
      null,
    );
  }
  const name = (err as Error | undefined)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new TokenEndpointError(
      'oidc.token_timeout',
      'The identity provider did not answer in time. Try again in a moment.',
      504,
      'The token endpoint did not answer within 10 seconds.',
      null,
      null,
      null,
    );
  }
  return new TokenEndpointError(
    'oidc.token_unreachable',
    'The identity provider could not be reached for the code exchange. Try again in a moment.',
    502,
    `The token endpoint could not be reached: ${clean((err as Error | undefined)?.message) ?? 'unknown error'}.`,
    null,
    null,
    null,
  );
}
