// The OAuth `state` parameter: signed (HMAC-SHA256 with a key derived from cookie_secret),
// expiring, and naming the login flow whose PKCE verifier and nonce sit in this browser's flow
// cookie — so a state replayed from another browser, or after the flow was used, is refused.
// The post-login redirect travels inside it, signed, never in a cookie.
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface StatePayload {
  /** Flow id (matches an entry of the flow cookie). */
  i: string;
  /** Validated post-login redirect URL. */
  r: string;
  /** Expiry, unix seconds. */
  e: number;
  /** Provider name. */
  p: string;
}

export function signState(payload: StatePayload, key: Buffer): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  const mac = createHmac('sha256', key).update(body).digest('base64url');
  return `${body}.${mac}`;
}

/** The payload, or null when the state is malformed, forged, expired or another provider's. */
export function verifyState(state: string | null, key: Buffer, provider: string, nowSeconds = Math.floor(Date.now() / 1000)): StatePayload | null {
  if (!state || state.length > 4096) return null;
  const dot = state.indexOf('.');
  if (dot <= 0) return null;
  const body = state.slice(0, dot);
  const mac = Buffer.from(state.slice(dot + 1), 'base64url');
  const expected = createHmac('sha256', key).update(body).digest();
  if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return null;
  let payload: StatePayload;
  try {
    payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as StatePayload;
  } catch {
    return null;
  }
  if (typeof payload.i !== 'string' || typeof payload.r !== 'string' || typeof payload.e !== 'number' || payload.p !== provider) return null;
  if (payload.e <= nowSeconds) return null;
  return payload;
}
