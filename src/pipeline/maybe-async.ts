// Values that are synchronous on the fast path and a promise only when I/O was needed (a session
// store on Redis, a token introspection): callers test with `isPromise` instead of awaiting, so a
// synchronous answer costs no promise and no microtask.

export type MaybePromise<T> = T | Promise<T>;

export function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return v !== null && v !== undefined && typeof (v as { then?: unknown }).then === 'function';
}
