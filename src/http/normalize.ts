// The one normalization of the request target.
//
// Policy (documented in docs/security.md):
// - percent-encodings of unreserved characters (A-Z a-z 0-9 - . _ ~) are decoded; every other
//   escape is kept, with upper-case hex. `%2F`, `%5C`, `%3B`, `%3F` and `%23` therefore stay
//   encoded: the allowlist sees `%2F` exactly as the upstream receives it;
// - a literal backslash is encoded as `%5C` (some servers treat it as `/`);
// - repeated slashes are merged and `.` / `..` segments are resolved (RFC 3986 §5.2.4);
// - a path that would still climb through a segment once encoded separators or `;` parameters
//   are taken into account (`/a/..%2Fadmin`, `/a/..;/admin`) is refused, as are invalid escapes,
//   control characters, `#`, and targets that are not origin-form;
// - `%25` followed by an encoded dot, slash or backslash (`%252e`, `%25%32%66`, `%25255c`) is
//   refused: decoded once more, by a backend or a second proxy, it would be a separator;
// - the query string is kept byte for byte and never takes part in a decision.
// The result is what every decision uses and exactly what the upstream receives.

export class TargetError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'TargetError';
  }
}

const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126;
}

// Anything that might need work; most real paths have none of it and are returned as they are.
const NEEDS_WORK = /[%\\;]|\/\/|\/\.|[^\x21-\x7e]/;

/** Splits a raw request target into normalized path and raw query. Throws TargetError. */
export function splitTarget(rawTarget: string): { path: string; query: string } {
  const q = rawTarget.indexOf('?');
  const rawPath = q === -1 ? rawTarget : rawTarget.slice(0, q);
  const query = q === -1 ? '' : rawTarget.slice(q + 1);
  if (query.indexOf('#') !== -1) throw new TargetError('fragment in request target');
  return { path: normalizePath(rawPath), query };
}

export function normalizePath(rawPath: string): string {
  if (rawPath.charCodeAt(0) !== 47 /* / */) throw new TargetError('request target is not an absolute path');
  if (!NEEDS_WORK.test(rawPath)) {
    if (rawPath.indexOf('#') !== -1) throw new TargetError('fragment in request target');
    return rawPath;
  }
  // 1. Escapes and characters.
  let decoded = '';
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c === 37 /* % */) {
      const h = hexValue(rawPath.charCodeAt(i + 1));
      const l = hexValue(rawPath.charCodeAt(i + 2));
      if (h < 0 || l < 0) throw new TargetError('invalid percent-encoding in path');
      const v = h * 16 + l;
      if (v < 0x20 || v === 0x7f) throw new TargetError('encoded control character in path');
      decoded += isUnreserved(v) ? String.fromCharCode(v) : '%' + HEX[h] + HEX[l];
      i += 2;
    } else if (c === 35 /* # */) {
      throw new TargetError('fragment in request target');
    } else if (c <= 0x20 || c === 0x7f) {
      throw new TargetError('control character or space in path');
    } else if (c === 92 /* \ */) {
      decoded += '%5C';
    } else if (c > 0x7e) {
      // Non-ASCII: percent-encode as UTF-8 so the upstream and the regexes see one spelling.
      const cp = rawPath.codePointAt(i)!;
      if (cp >= 0xd800 && cp <= 0xdfff) throw new TargetError('invalid character in path');
      const ch = String.fromCodePoint(cp);
      decoded += encodeURIComponent(ch);
      i += ch.length - 1;
    } else {
      decoded += rawPath[i];
    }
  }
  // A backend (or a second proxy) that decodes once more would see `.`, `/` or `\` here:
  // `/public/%252e%252e/admin` must not be allowed as /public/… and served as /admin.
  if (decoded.indexOf('%25') !== -1) assertNoDoubleEncodedSeparator(decoded);
  // 2. Segments: merge slashes, resolve dot segments.
  const parts = decoded.split('/');
  const out: string[] = [];
  let trailingSlash = false;
  for (let i = 1; i < parts.length; i++) {
    const seg = parts[i]!;
    const last = i === parts.length - 1;
    if (seg === '' || seg === '.') {
      trailingSlash = last;
      continue;
    }
    if (seg === '..') {
      out.pop();
      trailingSlash = last;
      continue;
    }
    // 3. Encoded separators and `;` parameters must not hide a dot segment.
    if (seg.indexOf('%') !== -1 || seg.indexOf(';') !== -1) assertNoHiddenDotSegment(seg);
    out.push(seg);
    trailingSlash = false;
  }
  let path = '/' + out.join('/');
  if (trailingSlash && out.length > 0) path += '/';
  return path;
}

/** `%25`, any further `25`s, then `2E`, `2F` or `5C` (any case): a dot, slash or backslash encoded twice or more. */
function assertNoDoubleEncodedSeparator(decoded: string): void {
  for (let at = decoded.indexOf('%25'); at !== -1; at = decoded.indexOf('%25', at + 3)) {
    let j = at + 3;
    while (decoded.charCodeAt(j) === 50 /* 2 */ && decoded.charCodeAt(j + 1) === 53 /* 5 */) j += 2;
    const pair = decoded.slice(j, j + 2).toUpperCase();
    if (pair === '2E' || pair === '2F' || pair === '5C') throw new TargetError('double-encoded dot, slash or backslash in path');
  }
}

function assertNoHiddenDotSegment(seg: string): void {
  const full = seg.replace(/%2F/g, '/').replace(/%5C/g, '/').replace(/%3B/g, ';');
  for (const piece of full.split('/')) {
    const semi = piece.indexOf(';');
    const name = semi === -1 ? piece : piece.slice(0, semi);
    if (name === '.' || name === '..') throw new TargetError('dot segment hidden behind an encoded separator or ";"');
  }
}

const HOST_RE = /^(\[[0-9a-f:.]+\]|[a-z0-9._~!$&'()*+,;=-]+)(?::(\d{1,5}))?$/;

/** Lower-cases a Host value and drops the scheme's default port. Returns '' when invalid. */
export function normalizeHost(host: string | undefined, scheme: 'http' | 'https'): string {
  if (!host) return '';
  // The same few Host values arrive on every request: each is normalized once (bounded; a value
  // longer than any DNS name is not kept).
  const memo = scheme === 'https' ? httpsHosts : httpHosts;
  const known = memo.get(host);
  if (known !== undefined) return known;
  const normalized = normalizeHostOnce(host, scheme);
  if (host.length <= 300) {
    if (memo.size >= HOST_MEMO_LIMIT) memo.clear();
    memo.set(host, normalized);
  }
  return normalized;
}

const HOST_MEMO_LIMIT = 1_000;
const httpHosts = new Map<string, string>();
const httpsHosts = new Map<string, string>();

function normalizeHostOnce(host: string, scheme: 'http' | 'https'): string {
  const m = HOST_RE.exec(host.trim().toLowerCase());
  if (!m) return '';
  // A fully qualified name's trailing dot is dropped, with or without a port.
  const name = m[1]!.endsWith('.') ? m[1]!.slice(0, -1) : m[1]!;
  if (!name) return '';
  if (m[2] === undefined) return name;
  const port = Number(m[2]);
  if (port > 65535) return '';
  if ((scheme === 'http' && port === 80) || (scheme === 'https' && port === 443)) return name;
  return `${name}:${port}`;
}

/** The hostname part of a normalized host (no port, no brackets kept for IPv6). */
export function hostnameOf(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
