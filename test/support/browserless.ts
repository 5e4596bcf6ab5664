/**
 * Log in over plain HTTP(S) without a browser: a small cookie jar, one-request HTTP helper,
 * redirect following, HTML form parsing and a login driver for the demo identity provider
 * (or any IdP whose login page has a form with a `password` field).
 *
 * Host names are resolved with {@link resolveHost}: the `resolve` option maps host names
 * (exact, or `*.suffix`) to an address; `localhost`, `*.localhost` and `*.localtest` go to
 * 127.0.0.1 by default. The connection goes to that address but the real `Host` header (and
 * TLS SNI) is sent and cookies are kept under the URL's host name.
 *
 * TEST HELPER ONLY: https requests do not verify certificates.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP } from 'node:net';

// ---------------------------------------------------------------------------------------------
// Cookie jar
// ---------------------------------------------------------------------------------------------

export interface StoredCookie {
  name: string;
  value: string;
  /** Lower-case, without leading dot. */
  domain: string;
  /** true: only sent to exactly `domain`; false: also to its sub-domains. */
  hostOnly: boolean;
  path: string;
  /** epoch ms; undefined = session cookie. */
  expires?: number;
  secure: boolean;
  httpOnly: boolean;
  sameSite?: string;
}

function defaultPath(url: URL): string {
  const p = url.pathname;
  if (!p.startsWith('/')) return '/';
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

function domainMatches(host: string, domain: string): boolean {
  if (host === domain) return true;
  return host.endsWith(`.${domain}`) && isIP(host) === 0;
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

/** Hosts on which, like browsers do for localhost, `Secure` cookies are also sent over http. */
function isPotentiallyTrustworthy(url: URL): boolean {
  if (url.protocol === 'https:' || url.protocol === 'wss:') return true;
  const h = url.hostname.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '127.0.0.1' || h === '[::1]';
}

export class CookieJar {
  private cookies: StoredCookie[] = [];

  /** Store the `Set-Cookie` header values of a response to `url`. */
  store(url: URL, setCookie: string[] | string | undefined): void {
    if (!setCookie) return;
    for (const line of Array.isArray(setCookie) ? setCookie : [setCookie]) this.storeOne(url, line);
  }

  private storeOne(url: URL, line: string): void {
    const parts = line.split(';');
    const first = parts.shift() ?? '';
    const eq = first.indexOf('=');
    if (eq <= 0) return;
    const name = first.slice(0, eq).trim();
    const value = first.slice(eq + 1).trim();
    if (!name) return;
    const host = url.hostname.toLowerCase();
    const cookie: StoredCookie = {
      name,
      value,
      domain: host,
      hostOnly: true,
      path: defaultPath(url),
      secure: false,
      httpOnly: false,
    };
    let maxAge: number | undefined;
    let expires: number | undefined;
    for (const attr of parts) {
      const i = attr.indexOf('=');
      const key = (i === -1 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const val = i === -1 ? '' : attr.slice(i + 1).trim();
      switch (key) {
        case 'domain': {
          const d = val.replace(/^\./, '').toLowerCase();
          if (!d) break;
          if (!domainMatches(host, d)) return; // a server may not set cookies for foreign domains
          cookie.domain = d;
          cookie.hostOnly = false;
          break;
        }
        case 'path':
          cookie.path = val.startsWith('/') ? val : defaultPath(url);
          break;
        case 'max-age': {
          const n = Number.parseInt(val, 10);
          if (!Number.isNaN(n)) maxAge = n;
          break;
        }
        case 'expires': {
          const t = Date.parse(val);
          if (!Number.isNaN(t)) expires = t;
          break;
        }
        case 'secure':
          cookie.secure = true;
          break;
        case 'httponly':
          cookie.httpOnly = true;
          break;
        case 'samesite':
          cookie.sameSite = val;
          break;
        default:
          break;
      }
    }
    if (maxAge !== undefined) cookie.expires = Date.now() + maxAge * 1000;
    else if (expires !== undefined) cookie.expires = expires;

    this.cookies = this.cookies.filter(
      (c) => !(c.name === cookie.name && c.domain === cookie.domain && c.path === cookie.path),
    );
    if (cookie.expires !== undefined && cookie.expires <= Date.now()) return; // deletion
    this.cookies.push(cookie);
  }

  /** Cookies that would be sent to `url`, most specific path first. */
  matching(url: URL): StoredCookie[] {
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires === undefined || c.expires > now);
    const host = url.hostname.toLowerCase();
    const path = url.pathname || '/';
    const trustworthy = isPotentiallyTrustworthy(url);
    return this.cookies
      .filter((c) => (c.hostOnly ? c.domain === host : domainMatches(host, c.domain)))
      .filter((c) => pathMatches(path, c.path))
      .filter((c) => !c.secure || trustworthy)
      .sort((a, b) => b.path.length - a.path.length);
  }

  /** The `Cookie` request header value for `url` ('' when none). */
  header(url: URL): string {
    return this.matching(url)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  /** Value of the first (most specific) cookie called `name`, optionally only those sent to `host`. */
  get(name: string, host?: string): string | undefined {
    return this.getCookie(name, host)?.value;
  }

  getCookie(name: string, host?: string): StoredCookie | undefined {
    const now = Date.now();
    const live = this.cookies.filter((c) => c.name === name && (c.expires === undefined || c.expires > now));
    if (host === undefined) return live[0];
    const h = host.toLowerCase();
    return live.find((c) => (c.hostOnly ? c.domain === h : domainMatches(h, c.domain)));
  }

  /** Put a cookie into the jar directly (host-only unless `opts.domain` given). */
  set(name: string, value: string, opts: { host: string; domain?: string; path?: string; maxAgeSeconds?: number; secure?: boolean }): void {
    const domain = (opts.domain ?? opts.host).replace(/^\./, '').toLowerCase();
    const path = opts.path ?? '/';
    this.cookies = this.cookies.filter((c) => !(c.name === name && c.domain === domain && c.path === path));
    this.cookies.push({
      name,
      value,
      domain,
      hostOnly: opts.domain === undefined,
      path,
      expires: opts.maxAgeSeconds === undefined ? undefined : Date.now() + opts.maxAgeSeconds * 1000,
      secure: opts.secure ?? false,
      httpOnly: false,
    });
  }

  /** Remove cookies called `name` (only those for `host` when given). */
  delete(name: string, host?: string): void {
    const h = host?.toLowerCase();
    this.cookies = this.cookies.filter((c) => !(c.name === name && (h === undefined || c.domain === h)));
  }

  all(): StoredCookie[] {
    return this.cookies.map((c) => ({ ...c }));
  }

  clear(): void {
    this.cookies = [];
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[]>;
  body: string;
  /** The URL that was requested (for redirect chains: the final URL). */
  url: string;
}

export interface HttpOptions {
  jar?: CookieJar;
  headers?: Record<string, string>;
  method?: string;
  body?: string;
  /** host name → address to connect to; keys may be exact names or `*.suffix` wildcards. */
  resolve?: Record<string, string>;
  timeoutMs?: number;
}

/** The address to connect to for `hostname`. */
export function resolveHost(hostname: string, resolve?: Record<string, string>): string {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  if (resolve) {
    if (resolve[h] !== undefined) return resolve[h]!;
    for (const [key, addr] of Object.entries(resolve)) {
      if (key.startsWith('*.') && (h.endsWith(key.slice(1)) || h === key.slice(2))) return addr;
    }
  }
  if (h === 'localhost' || h.endsWith('.localhost') || h.endsWith('.localtest')) return '127.0.0.1';
  return h;
}

function headerValue(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

/** Exactly one request (no redirect following). Cookies from/to `opts.jar`. */
export function httpGet(url: string, opts: HttpOptions = {}): Promise<HttpResult> {
  const target = new URL(url);
  const isHttps = target.protocol === 'https:';
  const method = (opts.method ?? 'GET').toUpperCase();
  const headers: Record<string, string> = { 'user-agent': 'portcullis-browserless/1' };
  headers.host = target.host;
  if (opts.jar) {
    const cookie = opts.jar.header(target);
    if (cookie) headers.cookie = cookie;
  }
  // Caller headers win; their spelling is kept on the wire.
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    for (const existing of Object.keys(headers)) if (existing.toLowerCase() === k.toLowerCase()) delete headers[existing];
    headers[k] = v;
  }
  let body: Buffer | undefined;
  if (opts.body !== undefined) {
    body = Buffer.from(opts.body, 'utf8');
    headers['content-length'] = String(body.length);
    if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['content-type'] = 'application/x-www-form-urlencoded';
  }
  const hostname = target.hostname.replace(/^\[|\]$/g, '');
  const connectTo = resolveHost(hostname, opts.resolve);
  const port = target.port ? Number(target.port) : isHttps ? 443 : 80;

  return new Promise<HttpResult>((resolvePromise, reject) => {
    const requestOptions: https.RequestOptions = {
      host: connectTo,
      port,
      method,
      path: `${target.pathname}${target.search}`,
      headers,
      agent: false,
    };
    if (isHttps) {
      requestOptions.rejectUnauthorized = false; // test helper only
      if (isIP(hostname) === 0) requestOptions.servername = hostname;
    }
    const req = (isHttps ? https : http).request(requestOptions, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out[k] = v;
        if (opts.jar) opts.jar.store(target, res.headers['set-cookie']);
        resolvePromise({ status: res.statusCode ?? 0, headers: out, body: Buffer.concat(chunks).toString('utf8'), url: target.href });
      });
    });
    req.setTimeout(opts.timeoutMs ?? 15_000, () => req.destroy(new Error(`timeout: ${method} ${target.href}`)));
    req.on('error', reject);
    req.end(body);
  });
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export function isRedirect(res: HttpResult): boolean {
  return REDIRECT_STATUSES.has(res.status) && headerValue(res.headers.location) !== undefined;
}

export interface FollowOptions {
  jar: CookieJar;
  headers?: Record<string, string>;
  /** Method/body of the first request (kept for 307/308, dropped for 301/302/303). */
  method?: string;
  body?: string;
  maxHops?: number;
  resolve?: Record<string, string>;
  stopWhen?: (res: HttpResult) => boolean;
}

/**
 * Request `url` and follow redirects until a non-redirect response (or `stopWhen` says stop).
 * `hops` holds every response in order; `final` is the last one (also the last element of `hops`).
 */
export async function followRedirects(url: string, opts: FollowOptions): Promise<{ final: HttpResult; hops: HttpResult[] }> {
  const maxHops = opts.maxHops ?? 20;
  const hops: HttpResult[] = [];
  let current = url;
  let method = opts.method ?? 'GET';
  let body = opts.body;
  for (;;) {
    const res = await httpGet(current, { jar: opts.jar, headers: opts.headers, method, body, resolve: opts.resolve });
    hops.push(res);
    if (opts.stopWhen?.(res) || !isRedirect(res)) return { final: res, hops };
    if (hops.length > maxHops) {
      throw new Error(`too many redirects (${hops.length}):\n${hops.map((h) => `  ${h.status} ${h.url}`).join('\n')}`);
    }
    current = new URL(headerValue(res.headers.location)!, current).href;
    if (res.status !== 307 && res.status !== 308) {
      method = 'GET';
      body = undefined;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HTML forms
// ---------------------------------------------------------------------------------------------

export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos|#39);/gi, (_m, e: string) => {
    const lower = e.toLowerCase();
    if (lower.startsWith('#x')) return String.fromCodePoint(Number.parseInt(lower.slice(2), 16));
    if (lower.startsWith('#')) return String.fromCodePoint(Number.parseInt(lower.slice(1), 10));
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[lower] ?? _m;
  });
}

function parseAttributes(s: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  const re = /([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) attrs[m[1]!.toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  return attrs;
}

export interface ParsedForm {
  id?: string;
  /** Absolute URL the form submits to. */
  action: string;
  method: string;
  /** Every named input with its value (hidden fields included; checkboxes only if checked). */
  fields: Record<string, string>;
  /** Names of inputs by type, e.g. `{ password: ['password'] }`. */
  inputTypes: Record<string, string[]>;
}

/** All `<form>`s of an HTML page, with actions resolved against `baseUrl`. */
export function parseForms(html: string, baseUrl: string): ParsedForm[] {
  const forms: ParsedForm[] = [];
  const formRe = /<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi;
  let m: RegExpExecArray | null;
  while ((m = formRe.exec(html))) {
    const attrs = parseAttributes(m[1] ?? '');
    const inner = m[2] ?? '';
    const fields: Record<string, string> = {};
    const inputTypes: Record<string, string[]> = {};
    const inputRe = /<input\b([^>]*)>/gi;
    let im: RegExpExecArray | null;
    while ((im = inputRe.exec(inner))) {
      const a = parseAttributes(im[1] ?? '');
      const type = (a.type ?? 'text').toLowerCase();
      if (!a.name) continue;
      (inputTypes[type] ??= []).push(a.name);
      if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
      if (type === 'submit' || type === 'button' || type === 'image') continue;
      fields[a.name] = a.value ?? '';
    }
    forms.push({
      id: attrs.id,
      action: new URL(attrs.action || baseUrl, baseUrl).href,
      method: (attrs.method ?? 'get').toUpperCase(),
      fields,
      inputTypes,
    });
  }
  return forms;
}

/** Submit a parsed form (fields overridden by `values`); does not follow the redirect. */
export function submitForm(form: ParsedForm, values: Record<string, string>, opts: HttpOptions): Promise<HttpResult> {
  const data = new URLSearchParams({ ...form.fields, ...values }).toString();
  if (form.method === 'POST') {
    return httpGet(form.action, {
      ...opts,
      method: 'POST',
      body: data,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...opts.headers },
    });
  }
  const u = new URL(form.action);
  u.search = data;
  return httpGet(u.href, { ...opts, method: 'GET' });
}

function findLoginForm(res: HttpResult): ParsedForm | undefined {
  if (res.status !== 200 && res.status !== 401) return undefined;
  return parseForms(res.body, res.url).find((f) => f.inputTypes.password?.length);
}

// ---------------------------------------------------------------------------------------------
// Login / logout drivers
// ---------------------------------------------------------------------------------------------

export interface FlowOptions {
  jar: CookieJar;
  resolve?: Record<string, string>;
  headers?: Record<string, string>;
  maxHops?: number;
}

/**
 * GET `startUrl`, follow redirects to the IdP, fill in and submit its login form, then follow
 * the redirects back (through the proxy's callback) to the first non-redirect response.
 * If no login form is reached (already signed in) the first non-redirect response is returned.
 * If the credentials are refused, `final` is the IdP's re-rendered login page (HTTP 401).
 * `hops` holds every response in order (the login form page and the form POST included).
 */
export async function loginThrough(
  startUrl: string,
  user: { username: string; password: string },
  opts: FlowOptions,
): Promise<{ final: HttpResult; hops: HttpResult[] }> {
  const common = { jar: opts.jar, resolve: opts.resolve, headers: opts.headers, maxHops: opts.maxHops };
  const first = await followRedirects(startUrl, common);
  const hops = [...first.hops];
  const form = findLoginForm(first.final);
  if (!form) return { final: first.final, hops };

  const userField = form.inputTypes.text?.find((n) => /user|login|email|name/i.test(n)) ?? form.inputTypes.text?.[0] ?? form.inputTypes.email?.[0] ?? 'username';
  const passField = form.inputTypes.password![0]!;
  const posted = await submitForm(form, { [userField]: user.username, [passField]: user.password }, { jar: opts.jar, resolve: opts.resolve, headers: opts.headers });
  hops.push(posted);
  if (!isRedirect(posted)) return { final: posted, hops };
  const next = new URL(headerValue(posted.headers.location)!, posted.url).href;
  const back = await followRedirects(next, common);
  hops.push(...back.hops);
  return { final: back.final, hops };
}

/**
 * GET `startUrl` (e.g. the proxy's `/outpost.goauthentik.io/sign_out`), follow redirects, and
 * submit any self-submitting form on the way (like the IdP's logout confirmation page, or a
 * `form_post` response) as a browser running its inline script would, until a page without
 * such a form. `autoSubmit` decides which forms to submit (default: forms of pages that
 * contain `.submit()` in a script, or forms with id `op.logoutForm`).
 */
export async function submitThrough(
  startUrl: string,
  opts: FlowOptions & { autoSubmit?: (form: ParsedForm, page: HttpResult) => boolean; maxForms?: number },
): Promise<{ final: HttpResult; hops: HttpResult[] }> {
  const common = { jar: opts.jar, resolve: opts.resolve, headers: opts.headers, maxHops: opts.maxHops };
  const auto =
    opts.autoSubmit ??
    ((form: ParsedForm, page: HttpResult) => form.id === 'op.logoutForm' || /<script\b[^>]*>[^<]*\.submit\(\)/i.test(page.body));
  let { final, hops } = await followRedirects(startUrl, common);
  hops = [...hops];
  for (let i = 0; i < (opts.maxForms ?? 5); i++) {
    if (final.status !== 200) break;
    const form = parseForms(final.body, final.url).find((f) => auto(f, final));
    if (!form) break;
    const posted = await submitForm(form, {}, { jar: opts.jar, resolve: opts.resolve, headers: opts.headers });
    hops.push(posted);
    final = posted;
    if (isRedirect(posted)) {
      const next = await followRedirects(new URL(headerValue(posted.headers.location)!, posted.url).href, common);
      hops.push(...next.hops);
      final = next.final;
    }
  }
  return { final, hops };
}
