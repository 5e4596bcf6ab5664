// The forward-auth endpoints: where a reverse proxy asks "may this request pass, and as whom?".
// Each resolver recognises its path under /outpost.goauthentik.io/auth/ and reads the original
// request (method, scheme, host, target) from what that reverse proxy sends; the context factory
// then normalizes it and the ordinary chain (auth → allowlist → access_rules → headers, then the forward exit)
// decides, exactly as for a proxied request.
//
//  endpoint       original request from                                   not authenticated
//  auth/nginx     X-Original-URL, or X-Original-URI + Host                  401 (nginx redirects)
//  auth/traefik   X-Forwarded-Proto, -Host, -Uri, -Method                    302 to the IdP
//  auth/caddy     X-Forwarded-Proto, -Host, -Uri, -Method                    302 to the IdP
//  auth/envoy/…   the check request itself: path after the prefix, query, Host  302 to the IdP
//
// Every resolver refuses, in this order:
//  - a caller whose forwarded headers are not believed (403, names `trusted_proxies`);
//  - a missing or unparsable forwarding header (400, names the header) — never a 2xx;
//  - a forwarded path with dot segments, or one that cannot be normalized: the proxy passes the
//    raw path upstream. 400, except to nginx: 403, because auth_request turns any answer but
//    2xx, 401 and 403 into a 500 for the browser;
//  - a request that carries an X-authentik-* header spelled with `_` (`X_authentik_username`):
//    403. nginx with `underscores_in_headers on` passes such a header to the application and
//    cannot replace it (proxy_set_header matches the exact spelling), and CGI-style servers read it
//    as the identity header. A client's X-authentik-* header in the ordinary spelling is answered
//    as usual (as authentik does): the generated configurations replace or remove every identity
//    header on the request they pass on, whatever the answer.
import type { IncomingHttpHeaders } from 'node:http';
import type { Respond } from '../../pipeline/contract.js';
import { rawTargetOf, type EntryResolver, type OriginalRequest, type PeerView, type RawRequestView } from '../../pipeline/context.js';
import { OUTPOST_PREFIX } from '../../config/provider.js';
import { normalizeHost, splitTarget } from '../../http/normalize.js';
import { page } from '../../http/pages.js';

export const AUTH_PATHS = {
  nginx: `${OUTPOST_PREFIX}/auth/nginx`,
  traefik: `${OUTPOST_PREFIX}/auth/traefik`,
  caddy: `${OUTPOST_PREFIX}/auth/caddy`,
  envoy: `${OUTPOST_PREFIX}/auth/envoy`,
} as const;

/** The outpost's own endpoints: nginx lets them through (it routes them to Portcullis). */
const OWN_ENDPOINTS = new Set([`${OUTPOST_PREFIX}/start`, `${OUTPOST_PREFIX}/callback`, `${OUTPOST_PREFIX}/sign_out`]);
const METHOD = /^[A-Z][A-Z0-9_-]{0,31}$/;

/**
 * `http(s)://host[/path][?query]` split in one pass, or null (no `#` anywhere). Not a regex:
 * `/^(https?):\/\/([^/?#]*)([^#]*)$/` backtracked quadratically on a long host followed by a
 * `#` (a 5.5 KB header cost ~50 ms and stalled the event loop).
 */
export function splitAbsoluteUrl(url: string): { scheme: 'http' | 'https'; host: string; rest: string } | null {
  const sep = url.indexOf('://');
  if (sep !== 4 && sep !== 5) return null;
  const scheme = url.slice(0, sep).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return null;
  if (url.indexOf('#', sep) !== -1) return null;
  let end = sep + 3;
  while (end < url.length) {
    const c = url.charCodeAt(end);
    if (c === 47 /* / */ || c === 63 /* ? */) break;
    end++;
  }
  return { scheme, host: url.slice(sep + 3, end), rest: url.slice(end) };
}

const nginxEntry: EntryResolver = {
  entry: 'nginx',
  path: AUTH_PATHS.nginx,
  refusedTargetStatus: 403,
  extract(req, view) {
    const refused = common(req, view, 'nginx');
    if (refused) return refused;
    const h = req.headers;
    let original: { scheme: 'http' | 'https'; host: string; target: string };
    const url = single(h['x-original-url']);
    if (url !== undefined) {
      const m = splitAbsoluteUrl(url);
      if (!m) return badHeader(view, 'nginx', 'X-Original-URL', 'is not an absolute http(s) URL (expected $scheme://$http_host$request_uri)');
      const { scheme, host, rest } = m;
      if (host.includes('@') || normalizeHost(host, scheme) === '') return badHeader(view, 'nginx', 'X-Original-URL', 'has no valid host');
      original = { scheme, host, target: rest === '' ? '/' : rest.startsWith('?') ? '/' + rest : rest };
      if (!original.target.startsWith('/')) return badHeader(view, 'nginx', 'X-Original-URL', 'has no valid path');
    } else {
      const uri = single(h['x-original-uri']);
      if (uri === undefined) return missing(view, 'nginx', 'X-Original-URL', 'set `proxy_set_header X-Original-URL $scheme://$http_host$request_uri;` in the auth location (or X-Original-URI with Host)');
      if (!uri.startsWith('/')) return badHeader(view, 'nginx', 'X-Original-URI', 'must start with "/"');
      const proto = single(h['x-forwarded-proto']);
      const scheme = proto === undefined ? (req.socket.encrypted ? 'https' : 'http') : proto.toLowerCase();
      if (scheme !== 'http' && scheme !== 'https') return badHeader(view, 'nginx', 'X-Forwarded-Proto', 'must be http or https');
      // The host comes from Host, which the auth location must set (`proxy_set_header Host
      // $http_host;`). X-Forwarded-Host is not read: nginx passes a client's copy of it through to
      // the auth request unless the configuration overwrites it, and a decision made for another
      // host (say, one with a public path) would let this request through.
      const host = single(h.host);
      if (host === undefined) return missing(view, 'nginx', 'Host', 'X-Original-URI needs the original Host (proxy_set_header Host $http_host)');
      if (normalizeHost(host, scheme) === '') return badHeader(view, 'nginx', 'Host', 'is not a valid host');
      original = { scheme, host, target: uri };
    }
    const method = single(h['x-original-method']) ?? req.method;
    if (!METHOD.test(method)) return badHeader(view, 'nginx', 'X-Original-Method', 'is not an HTTP method');
    // nginx builds the post-login redirect itself (error_page 401 → start?rd=…), so the query has
    // no part in its answer. It is dropped: the callback / logout signatures in it are not acted
    // on, as in authentik's nginx handler — an auth_request answer cannot redirect the browser
    // (nginx turns anything but 2xx, 401 and 403 into a 500).
    const q = original.target.indexOf('?');
    const path = q === -1 ? original.target : original.target.slice(0, q);
    if (path.startsWith(OUTPOST_PREFIX + '/')) {
      // The outpost's own login endpoints, when auth_request also covers their location.
      let normalized: string | undefined;
      try {
        normalized = splitTarget(path).path;
      } catch {
        normalized = undefined; // the factory answers 400
      }
      if (normalized !== undefined && OWN_ENDPOINTS.has(normalized)) return ALLOW_OWN_ENDPOINT;
    }
    if (dotSegmentIn(path)) return dotSegmentRefused(view, 'nginx', url !== undefined ? 'X-Original-URL' : 'X-Original-URI', 403);
    return { method, scheme: original.scheme, host: original.host, target: path };
  },
};

function forwardedHeaders(entry: 'traefik' | 'caddy'): EntryResolver {
  return {
    entry,
    path: AUTH_PATHS[entry],
    extract(req, view) {
      const refused = common(req, view, entry);
      if (refused) return refused;
      const h = req.headers;
      const proto = single(h['x-forwarded-proto']);
      if (proto === undefined) return missing(view, entry, 'X-Forwarded-Proto');
      const scheme = proto.toLowerCase();
      if (scheme !== 'http' && scheme !== 'https') return badHeader(view, entry, 'X-Forwarded-Proto', 'must be http or https');
      const host = single(h['x-forwarded-host']);
      if (host === undefined) return missing(view, entry, 'X-Forwarded-Host');
      if (normalizeHost(host, scheme) === '') return badHeader(view, entry, 'X-Forwarded-Host', 'is not a valid host');
      const uri = single(h['x-forwarded-uri']);
      if (uri === undefined) return missing(view, entry, 'X-Forwarded-Uri');
      if (!uri.startsWith('/')) return badHeader(view, entry, 'X-Forwarded-Uri', 'must start with "/"');
      if (dotSegmentIn(uri)) return dotSegmentRefused(view, entry, 'X-Forwarded-Uri', 400);
      const method = single(h['x-forwarded-method']);
      if (method === undefined) return missing(view, entry, 'X-Forwarded-Method');
      if (!METHOD.test(method)) return badHeader(view, entry, 'X-Forwarded-Method', 'is not an HTTP method');
      return { method, scheme, host, target: uri } satisfies OriginalRequest;
    },
  };
}

const envoyEntry: EntryResolver = {
  entry: 'envoy',
  path: AUTH_PATHS.envoy,
  prefix: true,
  extract(req, view) {
    const refused = common(req, view, 'envoy');
    if (refused) return refused;
    const h = req.headers;
    // Envoy's ext_authz HTTP service sends the original method, path (after path_prefix), query
    // and :authority; the URL here is already normalized by the outpost. Dot segments are refused
    // on the target as received, as for nginx and Traefik: Envoy without normalize_path passes
    // `/admin/../public` to the application as it is, so the resolved path is not what it serves.
    if (dotSegmentIn(rawTargetOf(req))) {
      return page({
        status: 400,
        title: 'Forwarded path invalid',
        message: `${AUTH_PATHS.envoy}: the check request's path has a "." or ".." segment. Enable normalize_path in Envoy's HTTP connection manager (docs/reverse-proxies/).`,
        requestId: view.requestId,
        wantsJson: view.wantsJson,
        code: 'forward.dot_segment',
      });
    }
    const rest = req.url.slice(AUTH_PATHS.envoy.length);
    const target = rest === '' ? '/' : rest.startsWith('?') ? '/' + rest : rest;
    const host = single(h.host);
    if (host === undefined) return missing(view, 'envoy', 'Host', 'Envoy sends the original :authority as Host');
    const proto = single(h['x-forwarded-proto']);
    const scheme = proto === undefined ? (req.socket.encrypted ? 'https' : 'http') : proto.toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') return badHeader(view, 'envoy', 'X-Forwarded-Proto', 'must be http or https');
    if (normalizeHost(host, scheme) === '') return badHeader(view, 'envoy', 'Host', 'is not a valid host');
    return { method: req.method, scheme, host, target };
  },
};

/**
 * A forwarded path with `.` or `..` segments (also `%2E`-encoded) is refused: the reverse proxy
 * passes the path to the application as the client sent it, so a decision on the resolved path
 * (`/public/../admin` → `/admin`) could differ from what the application serves. Browsers
 * resolve dot segments before sending; only crafted requests have them.
 */
function dotSegmentIn(target: string): boolean {
  const q = target.indexOf('?');
  let path = q === -1 ? target : target.slice(0, q);
  if (path.indexOf('.') === -1 && !/%2e/i.test(path)) return false;
  path = path.replace(/%2e/gi, '.');
  for (const seg of path.split('/')) if (seg === '.' || seg === '..') return true;
  return false;
}

/** The built-in forward-auth endpoints, registered with the context factory. */
export const forwardEntries: readonly EntryResolver[] = [nginxEntry, forwardedHeaders('traefik'), forwardedHeaders('caddy'), envoyEntry];

const ALLOW_OWN_ENDPOINT: Respond = Object.freeze({ kind: 'respond', status: 200, headers: Object.freeze({ 'cache-control': 'no-store' }), body: '' });

/** Checks every forward-auth endpoint makes before reading the original request. */
function common(req: RawRequestView, view: PeerView, entry: string): Respond | undefined {
  if (!view.forwardTrusted) {
    return page({
      status: 403,
      title: 'Untrusted forward-auth caller',
      message: `${AUTH_PATHS[entry as keyof typeof AUTH_PATHS]} believes the forwarded headers only of reverse proxies listed in the outpost setting trusted_proxies (when that list is empty: loopback peers only); ${view.peerIp || 'this peer'} is not one of them.`,
      requestId: view.requestId,
      wantsJson: view.wantsJson,
      code: 'forward.untrusted_proxy',
    });
  }
  const spoofed = underscoreIdentityHeaderIn(req.headers);
  if (spoofed !== undefined) {
    return page({
      status: 403,
      title: 'Identity header in request',
      message: `The request carries the header "${spoofed}": an X-authentik-* header spelled with "_" could reach the application past the reverse proxy, so the request is refused.`,
      requestId: view.requestId,
      wantsJson: view.wantsJson,
      code: 'forward.identity_header_in_request',
    });
  }
  return undefined;
}

/** The first client header that is an X-authentik-* header in any case with `_` for a `-` somewhere. */
export function underscoreIdentityHeaderIn(headers: IncomingHttpHeaders): string | undefined {
  for (const name in headers) {
    const c = name.charCodeAt(0);
    if ((c === 120 /* x */ || c === 88) && name.length > 12 && name.indexOf('_') !== -1) {
      const norm = name.slice(0, 12).toLowerCase().replace(/_/g, '-');
      if (norm === 'x-authentik-') return name;
    }
  }
  return undefined;
}

function single(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const s = (Array.isArray(v) ? v[0] : v)?.trim();
  return s === undefined || s === '' ? undefined : s;
}

function missing(view: PeerView, entry: string, header: string, hint?: string): Respond {
  return page({
    status: 400,
    title: 'Forwarding header missing',
    message: `${AUTH_PATHS[entry as keyof typeof AUTH_PATHS]}: the header ${header} is missing${hint ? `; ${hint}` : ''}. Check the reverse proxy configuration (docs/forward-auth.md).`,
    requestId: view.requestId,
    wantsJson: view.wantsJson,
    code: 'forward.missing_header',
  });
}

function dotSegmentRefused(view: PeerView, entry: string, header: string, status: 400 | 403): Respond {
  return page({
    status,
    title: 'Path refused',
    message: `${AUTH_PATHS[entry as keyof typeof AUTH_PATHS]}: the forwarded path (${header}) has a "." or ".." segment. The reverse proxy passes the path to the application as it is, so Portcullis does not decide on a resolved one.`,
    requestId: view.requestId,
    wantsJson: view.wantsJson,
    code: 'forward.dot_segment',
  });
}

function badHeader(view: PeerView, entry: string, header: string, why: string): Respond {
  return page({
    status: 400,
    title: 'Forwarding header invalid',
    message: `${AUTH_PATHS[entry as keyof typeof AUTH_PATHS]}: the header ${header} ${why}. Check the reverse proxy configuration (docs/forward-auth.md).`,
    requestId: view.requestId,
    wantsJson: view.wantsJson,
    code: 'forward.invalid_header',
  });
}
