// The request methods Portcullis serves. Node's HTTP parser accepts only the methods in
// `http.METHODS` (others are answered 400 by Node before any code runs); of those, every one is
// routed to the same chain and proxied — WebDAV, CalDAV and the like included — except CONNECT
// (a tunnel, which Node hands to a separate event that Portcullis does not serve) and TRACE,
// which the upstream stage refuses (it would echo the identity headers back to the client).
import { METHODS } from 'node:http';

/** Methods Fastify knows out of the box (fastify.js kSupportedHTTPMethods). */
const FASTIFY_DEFAULT = new Set(['GET', 'HEAD', 'TRACE', 'DELETE', 'OPTIONS', 'PATCH', 'PUT', 'POST', 'QUERY']);

/** Every method the proxy routes. */
export const ROUTED_METHODS: readonly string[] = Object.freeze(METHODS.filter((m) => m !== 'CONNECT'));

/**
 * Methods to add to Fastify, each as one that may carry a body (PROPFIND, REPORT, LOCK, … do):
 * Fastify then hands their body stream to the proxy instead of leaving it unread.
 */
export const EXTRA_METHODS: readonly string[] = Object.freeze(ROUTED_METHODS.filter((m) => !FASTIFY_DEFAULT.has(m)));
