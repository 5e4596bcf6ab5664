// The one place where claims from an identity provider take the shapes the rest of Portcullis
// relies on. Every claim set passes through here before anything reads it: the ID token (merged
// with userinfo) at login, and the introspection answer (merged with userinfo) of a bearer token.
// Scope mappings, access rules and the identity headers therefore all see the same shapes,
// whichever provider sent the claims:
//
//  - `groups`, `entitlements`: an array of strings. A single string (LemonLDAP::NG sends
//    `"groups": "users"` for a member of one group) becomes a one-element list; numbers become
//    strings; other entries (objects, null) are dropped; an empty string is no group at all.
//  - `email_verified`: a boolean. `"true"` / `"false"` (any case), `1` / `0` and `"1"` / `"0"`
//    are read as such; anything else is removed (not verified, fail closed).
//  - `preferred_username`, `username`, `name`, `given_name`, `family_name`, `nickname`, `email`:
//    strings. A finite number becomes its decimal string; anything else that is not a string
//    (an object, a list, a boolean) is removed.
//
// Everything else passes through unchanged. `sub` is never coerced: OpenID Connect requires a
// string, and the ID token's validation has already checked it.
import type { Claims } from '../sessions/store.js';

/** Claims that hold one string. */
export const STRING_CLAIMS = ['preferred_username', 'username', 'name', 'given_name', 'family_name', 'nickname', 'email'] as const;
/** Claims that hold a list of strings. */
export const LIST_CLAIMS = ['groups', 'entitlements'] as const;

/** A copy of `claims` in the shapes above (the input is not changed). */
export function normalizeClaims<T extends Record<string, unknown>>(claims: T): T & Partial<Claims> {
  const out: Record<string, unknown> = { ...claims };
  for (const name of LIST_CLAIMS) {
    if (!(name in out)) continue;
    const list = toStringList(out[name]);
    if (list === undefined) delete out[name];
    else out[name] = list;
  }
  for (const name of STRING_CLAIMS) {
    if (!(name in out)) continue;
    const s = toSingleString(out[name]);
    if (s === undefined) delete out[name];
    else out[name] = s;
  }
  if ('email_verified' in out) {
    const b = toBoolean(out.email_verified);
    if (b === undefined) delete out.email_verified;
    else out.email_verified = b;
  }
  return out as T & Partial<Claims>;
}

function toSingleString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

function toStringList(v: unknown): string[] | undefined {
  if (v === null || v === undefined) return undefined;
  if (Array.isArray(v)) {
    const out: string[] = [];
    for (const item of v) {
      const s = toSingleString(item);
      if (s !== undefined && s !== '') out.push(s);
    }
    return out;
  }
  const single = toSingleString(v);
  if (single === undefined) return undefined;
  return single === '' ? [] : [single];
}

function toBoolean(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 1 || v === 0) return v === 1;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === 'true' || s === '1') return true;
    if (s === 'false' || s === '0') return false;
  }
  return undefined;
}
