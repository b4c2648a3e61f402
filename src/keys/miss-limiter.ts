/**
 * A token bucket per client address for lookups of unknown keys: each costs Postgres a query,
 * and keys with a valid checksum are free to mint, so one client must not turn into a stream of
 * lookups. Only a lookup that finds no key takes a token; real keys never do, whether cached or
 * not (a cold cache after a deploy or a LISTEN reconnect is not an attack). An address with an
 * empty bucket is refused before its lookup. IPv6 addresses count per /64 (one host can hold a
 * whole /64). Buckets live in a bounded LRU: memory stays flat whatever the number of addresses.
 */
import { isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';

type Bucket = { tokens: number; at: number };

/** The /64 of an IPv6 address (`2001:db8:1:2::/64`), an IPv4 address as it is. */
export function addressKey(ip: string | undefined): string {
  if (!ip) return '';
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4?.[1]) return v4[1];
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

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

  #bucket(ip: string | undefined): Bucket {
    const key = addressKey(ip);
    const now = this.#now();
    const bucket = this.#buckets.get(key) ?? { tokens: this.#burst, at: now };
    bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#perMs);
    bucket.at = now;
    this.#buckets.set(key, bucket);
    return bucket;
  }

  /** May `ip` look a key up? False (counted) when its unknown keys used up its bucket. */
  allow(ip: string | undefined): boolean {
    if (this.#bucket(ip).tokens >= 1) return true;
    this.refused += 1;
    return false;
  }

  /** A lookup of `ip` found no key: it takes a token. */
  charge(ip: string | undefined): void {
    const bucket = this.#bucket(ip);
    bucket.tokens = Math.max(0, bucket.tokens - 1);
  }

  /** Seconds until an empty bucket has a token again (for Retry-After). */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(1 / (this.#perMs * 1000)));
  }
}
