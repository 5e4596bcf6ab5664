// Header names that claims (additionalHeaders) may never produce. Shared by the login's claim
// validation and the config check of additional_header_names.
import { HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

/**
 * Never settable from claims, even with allowIdentityHeaderOverride: framing and connection
 * control (a claim could otherwise desynchronise the upstream connection, or make every request
 * of the user fail, as `Expect` does), routing (`Host`), and the headers that act on the answer a
 * reverse proxy passes to the browser (`Set-Cookie`, `Location`, …: forward-auth answers carry the
 * additional headers).
 */
const NEVER_HEADERS: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP_HEADERS,
  'host',
  'cookie',
  'cookie2',
  'set-cookie',
  'set-cookie2',
  'location',
  'refresh',
  'www-authenticate',
  'cache-control',
  'content-length',
  'content-type',
  'content-encoding',
  'content-range',
  'expect',
  'trailers',
  'http2-settings',
  'alt-svc',
]);
/** Prefixes never settable from claims: proxy hop headers, and Envoy's control headers (`x-envoy-auth-headers-to-remove`). */
const NEVER_PREFIXES = ['proxy-', 'x-envoy-'];

/** Why a header name (lower case) can never come from claims, or undefined when it can. */
export function refusedHeaderName(normalized: string): string | undefined {
  if (NEVER_HEADERS.has(normalized)) return `${normalized} cannot be set from claims`;
  for (const prefix of NEVER_PREFIXES) if (normalized.startsWith(prefix)) return `${prefix}* headers cannot be set from claims`;
  return undefined;
}

/**
 * A header name with `_` is never sent, to the upstream or in a forward-auth answer (as authentik
 * since PR #17650): servers that fold `_` into `-` (CGI, WSGI, PHP) could not tell it from a
 * client's copy of the `-` spelling.
 */
export function hasUnderscore(name: string): boolean {
  return name.indexOf('_') !== -1;
}
