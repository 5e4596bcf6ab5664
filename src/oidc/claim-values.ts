// Plain JSON values as claims hold them: which keys are never copied, what counts as a map, and
// how a value's type is named in messages. Shared by scope mappings (merging, converting CEL
// results) and the ak_proxy validation, so both refuse the same keys and speak of the same types.

/** Keys never copied from claims or mapping results: they would reach an object's prototype. */
export const UNSAFE_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** A plain object (what JSON decodes a map to), not an array, class instance or null. */
export function isObjectMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** A value's type as a message says it: `a list`, `an int`, `a double`, `a string`, `null`. */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'bigint') return 'an int';
  if (typeof value === 'number') return 'a double';
  return `a ${typeof value}`;
}
