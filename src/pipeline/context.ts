// Builds the per-request context for a door (doors.ts): which provider, the normalized target,
// who the peer is and what the request asks of Portcullis (its action). Trust in X-Forwarded-* is
// decided here, once, from `trusted_proxies`. What the doors are — the forward-auth endpoints, the
// login endpoints, the proxy — is declared by the plugins that own them; this module knows none
// of their names: a forward-auth door hands over its resolver, the auth plugin the action resolver.
import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import proxyaddr from 'proxy-addr';
import type { Action, Entry, RequestContext, RequestTarget, Respond } from './contract.js';
import type { ProviderRegistry } from '../config/provider.js';
import { normalizeHost, splitTarget, TargetError } from '../http/normalize.js';
import { page, wantsJson } from '../http/pages.js';

/** What the context factory needs of a request; a Fastify request and a bare IncomingMessage both fit. */
export interface RawRequestView {
  readonly method: string;
  /** The request target (already normalized when it came through Fastify's rewriteUrl). */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Names and values as received (Node keeps only the first Host in `headers`). */
  readonly rawHeaders?: readonly string[];
  readonly socket: { remoteAddress?: string; encrypted?: boolean };
}

/**
 * A forward-auth endpoint: extracts the original request from the headers the reverse proxy
 * sends. Its door (the forward-auth plugin's) routes `path` (and, with `prefix`, the paths below
 * it: Envoy) to it.
 */
export interface EntryResolver {
  readonly entry: Exclude<Entry, 'proxy'>;
  /** Exact path, or a prefix when `prefix` is true (Envoy). */
  readonly path: string;
  readonly prefix?: boolean;
  /**
   * The status for a client's request target that is refused (dot segments, a climb through an
   * encoded separator): 400, or 403 for a reverse proxy that passes only 2xx/401/403 on to the
   * browser (nginx's auth_request turns a 400 into a 500).
   */
  readonly refusedTargetStatus?: 400 | 403;
  /** The original request, or an error answer (missing headers: 400; untrusted caller: 403). */
  extract(req: RawRequestView, view: PeerView, requestPath: string): OriginalRequest | Respond;
}

export interface OriginalRequest {
  readonly method: string;
  readonly scheme: 'http' | 'https';
  /** Raw host as sent (normalized by the factory). */
  readonly host: string;
  /** Raw request target (path and query), normalized by the factory. */
  readonly target: string;
}

export interface PeerView {
  readonly peerIp: string;
  readonly peerTrusted: boolean;
  /**
   * Whether this peer's forwarded headers are believed by a forward-auth endpoint: it is in
   * `trusted_proxies`, or — only while that list is empty — it is a loopback address (a reverse
   * proxy on the same host works out of the box; remote peers never do unless listed).
   */
  readonly forwardTrusted: boolean;
  readonly requestId: string;
  readonly wantsJson: boolean;
}

type SplitTarget = { path: string; query: string };

/** Where rewriteRequestUrl leaves the normalized target (or why there is none) on the raw request. */
const kTarget = Symbol('portcullis.target');
/** The request target as the client sent it, before normalization. */
const kRawTarget = Symbol('portcullis.rawTarget');

/** The request target as received (an entry that must refuse what normalization would resolve). */
export function rawTargetOf(req: RawRequestView): string {
  return ((req as unknown as Record<symbol, string | undefined>)[kRawTarget] ?? req.url);
}

/**
 * Fastify's `rewriteUrl`: the one normalization of the request target, before routing. Routing,
 * the stages and the upstream then all see the same string; the split (or the TargetError) stays
 * on the raw request for `ContextFactory.build`, which answers 400 for a refused target.
 */
export function rewriteRequestUrl(req: { url?: string }): string {
  (req as Record<symbol, unknown>)[kRawTarget] = req.url ?? '/';
  try {
    const split = splitTarget(req.url ?? '/');
    (req as Record<symbol, unknown>)[kTarget] = split;
    return split.query === '' ? split.path : `${split.path}?${split.query}`;
  } catch (err) {
    (req as Record<symbol, unknown>)[kTarget] = err;
    return '/';
  }
}

/**
 * What a request asks of Portcullis itself, from its normalized target: a login endpoint, a
 * callback or logout signature in the query, or 'request' (an ordinary request). `forwarded`: the
 * target came through a forward-auth endpoint. Declared by the auth plugin, which serves them.
 */
export type ActionResolver = (target: { readonly path: string; readonly query: string }, forwarded: boolean) => Action;

const isLoopback = proxyaddr.compile('loopback');
/** Peer classes: in trusted_proxies; else a loopback address; else anything else. */
const PEER_TRUSTED = 1;
const PEER_LOOPBACK = 2;
const PEER_OTHER = 3;
const PEER_CACHE_LIMIT = 10_000;

export class ContextFactory {
  private readonly trust: (addr: string, i: number) => boolean;
  /** `trusted_proxies` is empty: forward-auth endpoints accept loopback peers. */
  private readonly loopbackDefault: boolean;
  private readonly peerClasses = new Map<string, number>();

  constructor(
    private readonly providers: ProviderRegistry,
    trustedProxies: readonly string[],
    private readonly actionOf: ActionResolver,
  ) {
    this.trust = proxyaddr.compile([...trustedProxies]);
    this.loopbackDefault = trustedProxies.length === 0;
  }

  /**
   * What a peer address is, memoized: proxy-addr parses the address string on every call, and
   * the same few peers (the reverse proxy, a load balancer) send every request. Bounded.
   */
  private peerClass(addr: string): number {
    let c = this.peerClasses.get(addr);
    if (c === undefined) {
      c = this.trust(addr, 0) ? PEER_TRUSTED : isLoopback(addr, 0) ? PEER_LOOPBACK : PEER_OTHER;
      if (this.peerClasses.size >= PEER_CACHE_LIMIT) this.peerClasses.clear();
      this.peerClasses.set(addr, c);
    }
    return c;
  }

  /**
   * The context, or an answer when the request cannot be served (bad target, unknown host). With
   * `resolver` (a forward-auth door) the original request comes from the reverse proxy's headers;
   * without, the request is served as it came (the proxy door, the login endpoints).
   */
  build(req: RawRequestView, requestId: string, resolver?: EntryResolver): RequestContext | Respond {
    const headers = req.headers;
    const peerIp = req.socket.remoteAddress ?? '';
    const peerClass = peerIp === '' ? PEER_OTHER : this.peerClass(peerIp);
    const peerTrusted = peerClass === PEER_TRUSTED;
    const json = wantsJson(headers.accept, headers['x-requested-with']);
    const view: PeerView = { peerIp, peerTrusted, forwardTrusted: peerTrusted, requestId, wantsJson: json };
    // Node keeps the first of several Host headers; a server or proxy behind may keep the last.
    if (req.rawHeaders !== undefined && hostCount(req.rawHeaders) > 1) {
      return page({
        status: 400,
        title: 'Bad request',
        message: 'The request has more than one Host header.',
        requestId,
        wantsJson: json,
        code: 'request.duplicate_host',
      });
    }

    // HTTP/2 names the host in `:authority` (RFC 9113 §8.3.1), and a Host beside it must agree:
    // the authority becomes the Host that everything after this reads (entries, logs, metrics).
    const authority = headers[':authority'];
    if (authority !== undefined) {
      if (headers.host !== undefined && headers.host !== authority) {
        return page({ status: 400, title: 'Bad request', message: 'The request names two different hosts (:authority and Host).', requestId, wantsJson: json, code: 'request.conflicting_host' });
      }
      (headers as Record<string, unknown>).host = authority;
    }

    // Normalized once, before routing (rewriteRequestUrl); a view built elsewhere (a benchmark,
    // a test) is normalized here.
    const pre = (req as unknown as Record<symbol, SplitTarget | Error | undefined>)[kTarget];
    if (pre instanceof Error) return badTarget(pre, view);
    let split: SplitTarget;
    if (pre !== undefined) split = pre;
    else {
      try {
        split = splitTarget(req.url);
      } catch (err) {
        return badTarget(err as Error, view);
      }
    }

    let entry: Entry = 'proxy';
    let method = req.method;
    let scheme: 'http' | 'https';
    let rawHost: string | undefined;
    let target = split;
    /** A forward-auth caller believed only by the loopback default (trusted_proxies empty). */
    let loopbackCaller = false;
    if (resolver) {
      const forwardTrusted = peerTrusted || (this.loopbackDefault && peerClass === PEER_LOOPBACK);
      loopbackCaller = forwardTrusted && !peerTrusted;
      const original = resolver.extract(req, forwardTrusted === peerTrusted ? view : { ...view, forwardTrusted }, split.path);
      if ('kind' in original) return original;
      entry = resolver.entry;
      method = original.method;
      scheme = original.scheme;
      rawHost = original.host;
      try {
        target = splitTarget(utf8FromHeader(original.target));
      } catch (err) {
        return badTarget(err as Error, view, resolver.refusedTargetStatus);
      }
    } else {
      scheme = req.socket.encrypted ? 'https' : 'http';
      rawHost = headers.host;
      if (peerTrusted) {
        const proto = first(headers['x-forwarded-proto']);
        if (proto === 'http' || proto === 'https') scheme = proto;
        const fwdHost = first(headers['x-forwarded-host']);
        if (fwdHost) rawHost = fwdHost;
      }
    }

    const host = normalizeHost(rawHost, scheme);
    const provider = host ? this.providers.forHost(host) : undefined;
    if (!provider) {
      return page({
        status: 400,
        title: 'No application for this host',
        message: `Portcullis has no provider whose external_host is "${host || rawHost || '(none)'}". Check the outpost configuration and make sure this host is included.`,
        requestId,
        wantsJson: json,
        code: 'routing.unknown_host',
      });
    }
    const action = this.actionOf(target, entry !== 'proxy');

    // A caller believed for the original URL is believed for the client address too: a loopback
    // reverse proxy (the default) vouches for the last X-Forwarded-For hop, which it set itself.
    const clientIp = peerTrusted
      ? headers['x-forwarded-for'] === undefined
        ? peerIp // what proxy-addr answers without the header, without its parse
        : proxyaddr(req as unknown as Parameters<typeof proxyaddr>[0], this.trust)
      : loopbackCaller
        ? (lastForwardedFor(headers['x-forwarded-for']) ?? peerIp)
        : peerIp;
    const requestTarget: RequestTarget = { scheme, host, path: target.path, query: target.query };
    return {
      requestId,
      method,
      headers,
      clientIp,
      peerIp,
      peerTrusted,
      // The secret-free view: stages never see the runtime (secrets, codecs, the OpenID client).
      provider: provider.view,
      entry,
      action,
      target: requestTarget,
      wantsJson: json,
      session: null,
      headerAuth: null,
      sessionUnavailable: false,
      allowlisted: false,
      identityHeaders: null,
      upstreamHeaders: null,
      upstream: null,
      setCookies: null,
    };
  }
}

/**
 * Node reads header values as latin1, so a forwarded URL holding raw UTF-8 (nginx's
 * `$request_uri` passes what the client sent) arrives as one character per byte; read those bytes
 * as UTF-8 again so that `é` is normalized to `%C3%A9`, as it would be in a request line.
 */
function utf8FromHeader(value: string): string {
  for (let i = 0; i < value.length; i++) {
    if (value.charCodeAt(i) > 0x7f) {
      const bytes = Buffer.from(value, 'latin1');
      const decoded = bytes.toString('utf8');
      // Not valid UTF-8: keep the bytes as latin1 characters (each is then percent-encoded).
      return Buffer.from(decoded, 'utf8').equals(bytes) ? decoded : value;
    }
  }
  return value;
}

/** The last address of X-Forwarded-For (the hop the calling proxy added), if it is one. */
function lastForwardedFor(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const s = Array.isArray(v) ? v[v.length - 1]! : v;
  const last = s.slice(s.lastIndexOf(',') + 1).trim();
  return isIP(last) !== 0 ? last : undefined;
}

function hostCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && (name === 'host' || name === 'Host' || name.toLowerCase() === 'host')) n++;
  }
  return n;
}

function first(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return undefined;
  const comma = s.indexOf(',');
  return (comma === -1 ? s : s.slice(0, comma)).trim();
}

function badTarget(err: Error, view: PeerView, status: 400 | 403 = 400): Respond {
  return page({
    status,
    title: 'Bad request',
    message: `The request target was refused: ${err instanceof TargetError ? err.reason : 'invalid'}.`,
    requestId: view.requestId,
    wantsJson: view.wantsJson,
    code: 'request.invalid_target',
  });
}
