/**
 * A token bucket per client IP for key lookups that miss the cache: each costs Postgres a query,
 * and keys with a valid checksum are free to mint, so one client must not turn into a stream of
 * lookups. Cache hits (real keys in use) never take a token. Buckets live in a bounded LRU:
 * memory stays flat whatever the number of addresses; an address evicted starts with a full
 * bucket again, which only a flood of distinct addresses can exploit.
 */
import { LRUCache } from 'lru-cache';

type Bucket = { tokens: number; at: number };

export class MissLimiter {
  readonly #buckets = new LRUCache<string, Bucket>({ max: 10_000 });
  readonly #perMs: number;
  readonly #burst: number;
  readonly #now: () => number;
  /** Lookups refused (429), for /metrics. */
  refused = 0;

  constructor(limits: { perSecond: number; burst: number }, now: () => number = Date.now) {
    this.#perMs = limits.perSecond / 1000;
    this.#burst = limits.burst;
    this.#now = now;
  }

  /** Takes a token for `ip`; false when its bucket is empty. */
  allow(ip: string | undefined): boolean {
    const key = ip ?? '';
    const now = this.#now();
    const bucket = this.#buckets.get(key) ?? { tokens: this.#burst, at: now };
    bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#perMs);
    bucket.at = now;
    const allowed = bucket.tokens >= 1;
    if (allowed) bucket.tokens -= 1;
    else this.refused += 1;
    this.#buckets.set(key, bucket);
    return allowed;
  }

  /** Seconds until `ip` has a token again (for Retry-After). */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(1 / (this.#perMs * 1000)));
  }
}
