// Cookie helpers for the hot path: read one cookie by name without parsing the whole header,
// and Set-Cookie strings whose attributes are fixed per provider at config load.

/** The value of cookie `name` in a Cookie header, or undefined. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let from = 0;
  for (;;) {
    const at = header.indexOf(name, from);
    if (at === -1) return undefined;
    const before = at === 0 ? ' ' : header[at - 1];
    const eq = at + name.length;
    if ((before === ' ' || before === ';') && header.charCodeAt(eq) === 61 /* = */) {
      const end = header.indexOf(';', eq + 1);
      return end === -1 ? header.slice(eq + 1).trim() : header.slice(eq + 1, end).trim();
    }
    from = at + name.length;
  }
}

/** A Cookie header without the named cookies (or undefined when nothing is left). */
export function withoutCookies(header: string, names: ReadonlySet<string>): string | undefined {
  const kept: string[] = [];
  for (const part of header.split(';')) {
    const trimmed = part.trim();
    if (!trimmed) continue;
    const eq = trimmed.indexOf('=');
    const name = eq === -1 ? trimmed : trimmed.slice(0, eq);
    if (!names.has(name)) kept.push(trimmed);
  }
  return kept.length ? kept.join('; ') : undefined;
}

export interface CookieAttributes {
  domain?: string;
  secure: boolean;
}

/** `; Path=/; HttpOnly; SameSite=Lax[; Secure][; Domain=…]`, computed once per provider. */
export function cookieAttributeSuffix(attrs: CookieAttributes): string {
  let s = '; Path=/; HttpOnly; SameSite=Lax';
  if (attrs.secure) s += '; Secure';
  if (attrs.domain) s += `; Domain=${attrs.domain}`;
  return s;
}

export function setCookie(name: string, value: string, maxAgeSeconds: number, suffix: string): string {
  return `${name}=${value}; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}${suffix}`;
}

export function clearCookie(name: string, suffix: string): string {
  return `${name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT${suffix}`;
}
