// Validation of post-login redirect targets (`rd`). A target is accepted only when it is an
// http(s) URL on the provider's external host or — in forward_domain mode — on the cookie
// domain or one of its subdomains (dot boundary: `evilexample.com` is not under `example.com`).
// Everything else falls back to the external host. Lessons from oauth2-proxy's advisories:
// refuse `//x`, `/\x`, backslashes, whitespace and control characters anywhere, userinfo, and
// any scheme but http(s).
import { normalizeHost } from './normalize.js';

export interface RedirectPolicy {
  /** external_host without a trailing slash, e.g. `https://app.example.com` or `https://x.test/sub`. */
  readonly externalBase: string;
  /** Normalized host of external_host (port kept when not the default). */
  readonly externalHost: string;
  /** forward_domain only: the cookie domain, lower-case, without a leading dot. */
  readonly cookieDomain: string | null;
}

const MAX_LENGTH = 8192;

export function validateRedirect(rd: string | undefined | null, policy: RedirectPolicy): string | null {
  if (!rd || rd.length > MAX_LENGTH) return null;
  for (let i = 0; i < rd.length; i++) {
    const c = rd.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 92 /* \ */ || c > 0x7e) return null;
  }
  let url: URL;
  if (rd.charCodeAt(0) === 47 /* / */) {
    if (rd.charCodeAt(1) === 47 || rd.charCodeAt(1) === 92) return null;
    try {
      url = new URL(rd, policy.externalBase + '/');
    } catch {
      return null;
    }
  } else {
    if (!/^https?:\/\/[^/]/i.test(rd)) return null;
    try {
      url = new URL(rd);
    } catch {
      return null;
    }
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  // No downgrade: behind an https external_host the session cookie is Secure, so a plain-http
  // target would only leak the URL and loop back to the login.
  if (url.protocol === 'http:' && policy.externalBase.startsWith('https:')) return null;
  if (url.username || url.password) return null;
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const host = normalizeHost(url.host, scheme);
  if (!host) return null;
  if (host === policy.externalHost) return url.href;
  const domain = policy.cookieDomain;
  if (domain) {
    const hostname = url.hostname.toLowerCase();
    if (hostname === domain || hostname.endsWith('.' + domain)) return url.href;
  }
  return null;
}
