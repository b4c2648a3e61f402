import { LRUCache } from 'lru-cache';
import type { AuthRecord } from './keys.types.ts';
import { detachedFromRequest } from '../platform/db-scope.ts';

export type CacheStats = { hits: number; misses: number };

/**
 * Per-instance cache of authentication records, keyed by the key's SHA-256 (never the
 * plaintext). Found keys live up to `ttlMs` (≤ 30 s) in one LRU; unknown keys `negativeTtlMs` in
 * another, bounded on its own (`negativeSize`): anyone can mint keys with a valid checksum, and
 * a stream of them must not push real keys out and send every real request to Postgres. Any
 * change to a key invalidates it here at once and on other instances through LISTEN/NOTIFY.
 *
 * A lookup that started before an invalidation must not repopulate the cache with what it read
 * then: every invalidation bumps `epoch`, and a lookup only stores its result if no
 * invalidation happened while it ran.
 */
export class KeyCache {
  readonly stats: CacheStats = { hits: 0, misses: 0 };
  readonly #cache: LRUCache<string, { value: AuthRecord }>;
  readonly #unknown: LRUCache<string, true>;
  readonly #hashById = new Map<string, string>();
  readonly #inflight = new Map<string, Promise<AuthRecord | null>>();
  #epoch = 0;

  constructor(options: {
    size: number;
    ttlMs: number;
    negativeTtlMs: number;
    negativeSize: number;
  }) {
    this.#unknown = new LRUCache({
      max: options.negativeSize,
      ttl: options.negativeTtlMs,
      ttlAutopurge: false,
    });
    this.#cache = new LRUCache({
      max: options.size,
      ttl: options.ttlMs,
      ttlAutopurge: false,
      dispose: (entry, hash) => {
        if (this.#hashById.get(entry.value.id) === hash) this.#hashById.delete(entry.value.id);
      },
    });
  }

  /** Synchronous: the cached record, null for a cached miss, undefined when not cached. */
  lookup(hash: string): AuthRecord | null | undefined {
    const hit = this.#cache.get(hash);
    if (hit) {
      this.stats.hits += 1;
      return hit.value;
    }
    if (!this.#unknown.get(hash)) return undefined;
    this.stats.hits += 1;
    return null;
  }

  /** Loads what `lookup` did not find (concurrent lookups of one key share a single load). */
  async get(hash: string, load: () => Promise<AuthRecord | null>): Promise<AuthRecord | null> {
    const hit = this.lookup(hash);
    if (hit !== undefined) return hit;
    this.stats.misses += 1;
    const pending = this.#inflight.get(hash);
    if (pending) return pending;
    const epoch = this.#epoch;
    // Shared by every request presenting this key: one leaving must not cancel the others' load.
    const promise = detachedFromRequest(load)
      .then((record) => {
        if (epoch === this.#epoch) this.#store(hash, record);
        return record;
      })
      .finally(() => {
        if (this.#inflight.get(hash) === promise) this.#inflight.delete(hash);
      });
    this.#inflight.set(hash, promise);
    return promise;
  }

  #store(hash: string, record: AuthRecord | null): void {
    if (record === null) {
      this.#unknown.set(hash, true);
      return;
    }
    this.#unknown.delete(hash);
    this.#cache.set(hash, { value: record });
    this.#hashById.set(record.id, hash);
  }

  invalidate(keyId: string): void {
    this.#epoch += 1;
    const hash = this.#hashById.get(keyId);
    if (hash !== undefined) this.#cache.delete(hash);
    // A key created since its hash was cached as unknown: it is not in #hashById, but a new key
    // is a new random plaintext, so no unknown entry can name it (nothing to clear there).
    // A lookup in flight may have read the old state; drop it so the next caller reloads.
    this.#inflight.clear();
  }

  /** Every cached key of `orgId` (its default rate limits changed): a scan, for a rare event. */
  invalidateOrg(orgId: string): void {
    this.#epoch += 1;
    const stale: string[] = [];
    for (const [hash, entry] of this.#cache.entries()) {
      if (entry.value.orgId === orgId) stale.push(hash);
    }
    for (const hash of stale) this.#cache.delete(hash);
    this.#inflight.clear();
  }

  clear(): void {
    this.#epoch += 1;
    this.#cache.clear();
    this.#unknown.clear();
    this.#hashById.clear();
    this.#inflight.clear();
  }

  get size(): number {
    return this.#cache.size;
  }

  get unknownSize(): number {
    return this.#unknown.size;
  }
}
