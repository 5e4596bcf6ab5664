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

/**
 * A function that drops the named cookies from a Cookie header: each `;`-separated part is
 * trimmed (as String.prototype.trim does), empty parts go, the name is what precedes the first
 * `=` (or the whole part), and the kept parts are joined with `; ` — undefined when none is left.
 * Made once (at config load) for a set of names: parts whose name cannot be one of them (they
 * lack the names' common prefix) are kept without a lookup, and nothing is allocated for them
 * but the result (a request's header is read once, part by part, without split or trim).
 */
export function cookieRemover(names: ReadonlySet<string>): (header: string) => string | undefined {
  const prefix = commonPrefix([...names]);
  return (header) => {
    let out: string | undefined;
    const n = header.length;
    let pos = 0;
    while (pos <= n) {
      let end = header.indexOf(';', pos);
      if (end === -1) end = n;
      let a = pos;
      let b = end;
      while (a < b && isTrimmed(header.charCodeAt(a))) a++;
      while (b > a && isTrimmed(header.charCodeAt(b - 1))) b--;
      if (a < b && !(prefix !== null && header.startsWith(prefix, a) && isNamed(header, a, b, names))) {
        out = out === undefined ? header.slice(a, b) : out + '; ' + header.slice(a, b);
      }
      pos = end + 1;
    }
    return out;
  };
}

function isNamed(header: string, a: number, b: number, names: ReadonlySet<string>): boolean {
  const eq = header.indexOf('=', a);
  return names.has(header.slice(a, eq === -1 || eq > b ? b : eq));
}

/** The names' longest common prefix; null for no names (nothing is ever removed). */
function commonPrefix(names: readonly string[]): string | null {
  if (names.length === 0) return null;
  let prefix = names[0]!;
  for (const name of names) while (!name.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix;
}

/** The characters String.prototype.trim removes. */
function isTrimmed(c: number): boolean {
  if (c === 32 || (c >= 9 && c <= 13)) return true;
  if (c < 160) return false;
  return c === 160 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
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
