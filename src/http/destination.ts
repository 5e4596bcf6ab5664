// WebDAV COPY and MOVE name a second target in `Destination` (RFC 4918 §10.3): where the resource
// is written. A decision made on the request path (access rules) must be made on that path too,
// and on the same normalized form as the request's own (splitTarget), or a user allowed on one
// path could copy or move into another. The upstream then gets the Destination in that very form
// (the upstream exit rewrites it onto its own host).
import { normalizeHost, splitTarget, TargetError } from './normalize.js';
import type { RequestTarget } from '../pipeline/contract.js';

export type Destination =
  /** On the host the request was made to: its normalized path and raw query. */
  | { readonly kind: 'here'; readonly path: string; readonly query: string }
  /** Another scheme, host or port (or with user info): not this provider's to write. */
  | { readonly kind: 'elsewhere' }
  /** Neither an absolute http(s) URI nor an absolute path, or a path the request line would refuse. */
  | { readonly kind: 'invalid'; readonly reason: string };

const ABSOLUTE = /^(https?):\/\/([^/?#]*)([^#]*)/i;

export function destinationOf(value: string, request: Pick<RequestTarget, 'scheme' | 'host'>): Destination {
  let raw: string;
  if (value.startsWith('/') && !value.startsWith('//')) raw = value;
  else {
    const m = ABSOLUTE.exec(value);
    // A relative reference would resolve against the request's path, differently by server.
    if (m === null) return { kind: 'invalid', reason: 'not an absolute URI or absolute path' };
    const scheme = m[1]!.toLowerCase() as 'http' | 'https';
    const authority = m[2]!;
    if (authority.includes('@')) return { kind: 'elsewhere' };
    if (scheme !== request.scheme || normalizeHost(authority, scheme) !== request.host) return { kind: 'elsewhere' };
    raw = m[3] === '' ? '/' : m[3]!;
  }
  const hash = raw.indexOf('#');
  if (hash !== -1) raw = raw.slice(0, hash);
  try {
    const { path, query } = splitTarget(raw);
    return { kind: 'here', path, query };
  } catch (err) {
    return { kind: 'invalid', reason: err instanceof TargetError ? err.reason : 'invalid' };
  }
}
