// The logger shape stages may use: pino's, without tying stages to Fastify.
export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** Keys whose values never reach a log line. */
export const REDACT_PATHS = [
  'req.headers.cookie',
  'req.headers.authorization',
  'headers.cookie',
  'headers.authorization',
  'client_secret',
  'cookie_secret',
  '*.client_secret',
  '*.cookie_secret',
  'id_token',
  'access_token',
];
