// Encrypts and authenticates cookie payloads with @fastify/secure-session (libsodium secretbox).
//
// secure-session's own hooks decode every configured session on every request and allocate a
// Proxy for each; Portcullis only needs its codec, on the one cookie that the request's provider
// owns. So the plugin is registered on a private, never-listening Fastify instance and its
// encode/decode decorators are used directly. Keys are derived per provider from cookie_secret
// with HKDF (fast), not secure-session's `secret` option (Argon2, ~0.5 s per key at start-up).
import { hkdfSync } from 'node:crypto';
import Fastify from 'fastify';
import secureSession from '@fastify/secure-session';

export interface CookieCodec {
  /** Encrypts a small JSON object into a cookie value. */
  encode(data: Record<string, unknown>): string;
  /** The object, or null when the value is malformed, tampered, foreign or expired. */
  decode(value: string): Record<string, unknown> | null;
}

export interface CodecSpec {
  /** Unique name (e.g. `p0.session`). */
  name: string;
  secret: string;
  /** Domain-separation label, so one cookie_secret yields independent keys. */
  purpose: string;
  /** Seconds after which secure-session refuses the cookie regardless of its Max-Age. */
  expirySeconds: number;
}

export function deriveKey(secret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('portcullis/v1'), Buffer.from(purpose), 32));
}

interface SecureSessionLike {
  get(key: string): unknown;
  data(): Record<string, unknown> | undefined;
}

interface CodecHost {
  encodeSecureSession(session: unknown, sessionName?: string): string;
  decodeSecureSession(cookie: string, log?: unknown, sessionName?: string): SecureSessionLike | null;
  createSecureSession(data: Record<string, unknown>): unknown;
}

const COOKIE_SHAPE = /^[A-Za-z0-9+/]+={0,2};[A-Za-z0-9+/]{32}$/;

const silentLog = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {}, child() { return silentLog; } };

export async function createCookieCodecs(specs: CodecSpec[]): Promise<Map<string, CookieCodec>> {
  const host = Fastify({ logger: false });
  await host.register(
    secureSession,
    specs.map((s) => ({ sessionName: s.name, cookieName: s.name, key: deriveKey(s.secret, s.purpose), expiry: s.expirySeconds })),
  );
  await host.ready();
  const h = host as unknown as CodecHost;
  const codecs = new Map<string, CookieCodec>();
  for (const spec of specs) {
    const name = spec.name;
    codecs.set(name, {
      encode: (data) => h.encodeSecureSession(h.createSecureSession(data), name),
      decode: (value) => {
        // Exactly secure-session's shape, base64 `cipher;nonce`: Buffer.from(…, 'base64') would
        // silently skip stray characters, so an altered cookie could decode to the same bytes.
        if (!COOKIE_SHAPE.test(value)) return null;
        try {
          const session = h.decodeSecureSession(value, silentLog, name);
          return session ? (session.data() ?? null) : null;
        } catch {
          // Undecodable input is "no cookie", never an error page.
          return null;
        }
      },
    });
  }
  return codecs;
}
