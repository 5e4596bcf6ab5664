// The HTTPS listener's server: HTTP/2 and HTTP/1.1 chosen by ALPN (`h2`, `http/1.1`), or
// HTTP/1.1 only (`listeners.https_http2: false`).
//
// HTTP/2 is node:http2's secure server with `allowHTTP1`: an HTTP/1.1 client (curl --http1.1, a
// WebSocket handshake, anything without ALPN) is served by Node's HTTP/1 machinery on the same
// port, with the same 'request', 'checkContinue' and 'upgrade' events; an h2 stream arrives as an
// Http2ServerRequest/Response pair through the same 'request' event, so the one Fastify handler
// (which looks at httpVersionMajor) serves both. WebSockets stay on HTTP/1.1 (no RFC 8441).
//
// What the outpost's drain needs from a listener and node:http2 lacks is added here: HTTP/2
// sessions are tracked, so that closing idle connections sends each session a GOAWAY (streams in
// flight finish, no new ones start) and closing all of them destroys the sessions.
import http from 'node:http';
import https from 'node:https';
import http2, { type Http2SecureServer, type Http2Session } from 'node:http2';
import type { TlsOptions } from 'node:tls';

/** A session idle this long is closed (GOAWAY), as Fastify does for the HTTP/2 servers it makes. */
export const HTTP2_SESSION_IDLE_MS = 72_000;

/** What the outpost does with each listening server (keepAliveTimeout: of the HTTP/1.1 connections). */
export type ConnectionControl = Pick<http.Server, 'closeIdleConnections' | 'closeAllConnections' | 'keepAliveTimeout'>;
export type HttpsListener = https.Server | (Http2SecureServer & ConnectionControl);

export function createHttpsListener(options: TlsOptions, useHttp2: boolean): HttpsListener {
  if (!useHttp2) return https.createServer(options);
  const server = http2.createSecureServer({
    ...options,
    allowHTTP1: true,
    // Node's HTTP/1 default (2000 header lines), instead of HTTP/2's 128 pairs.
    maxHeaderListPairs: 2000,
    // Browsers open up to 100 streams; unbounded streams per connection are a denial of service.
    settings: { maxConcurrentStreams: 100 },
  });
  const sessions = new Set<Http2Session>();
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.setTimeout(HTTP2_SESSION_IDLE_MS, () => session.close());
  });
  // With allowHTTP1 the server tracks its HTTP/1.1 connections as an http.Server does.
  const closeIdleHttp1 = http.Server.prototype.closeIdleConnections;
  const closeAllHttp1 = http.Server.prototype.closeAllConnections;
  return Object.assign(server, {
    // Read by Node's HTTP/1 code for the allowHTTP1 connections (the outpost sets its own).
    keepAliveTimeout: 5_000,
    closeIdleConnections(): void {
      closeIdleHttp1.call(server as unknown as http.Server);
      for (const session of sessions) session.close();
    },
    closeAllConnections(): void {
      closeAllHttp1.call(server as unknown as http.Server);
      for (const session of sessions) session.destroy();
    },
  });
}
