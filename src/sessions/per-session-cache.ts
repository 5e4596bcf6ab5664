// What a stage derives from a session once and then reuses on every request of it (identity
// headers, the upstream target). Keyed by what the record itself carries — its id, when it was
// issued (createdAt) and when its current tokens were (tokensIssuedAt, set anew by every
// refresh) — not by the record object: a store may hand back a new object for the same session
// on every read (a Redis store past its record cache, a store that decodes on each get), and the
// cache must hit all the same. A record is never changed under the same three: a login makes a new
// id, a validated bearer token a new createdAt, a refresh (new tokens, claims and proxy settings)
// a new tokensIssuedAt.
import type { SessionRecord } from './store.js';

/** Entries kept per cache; the oldest goes first when full (rebuilding one costs about a microsecond). */
export const PER_SESSION_CACHE_LIMIT = 10_000;

interface Entry<V> {
  readonly createdAt: number;
  readonly tokensIssuedAt: number | undefined;
  readonly value: V;
}

export class PerSessionCache<V> {
  private readonly entries = new Map<string, Entry<V>>();

  constructor(private readonly limit = PER_SESSION_CACHE_LIMIT) {}

  get(session: SessionRecord): V | undefined {
    const e = this.entries.get(session.id);
    return e !== undefined && e.createdAt === session.createdAt && e.tokensIssuedAt === session.tokensIssuedAt ? e.value : undefined;
  }

  set(session: SessionRecord, value: V): void {
    if (this.entries.size >= this.limit && !this.entries.has(session.id)) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(session.id, { createdAt: session.createdAt, tokensIssuedAt: session.tokensIssuedAt, value });
  }

  get size(): number {
    return this.entries.size;
  }
}
