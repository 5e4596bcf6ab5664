// The error of a failed OpenID Connect step: a machine-readable code (shown on the page and in
// the log), a message, and the HTTP status the answer gets. Its own module, so that the modules
// describing particular failures (token-errors.ts, userinfo.ts) need not import the client.
export class OidcError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'OidcError';
  }
}
