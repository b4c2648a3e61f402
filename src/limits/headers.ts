/**
 * The IETF rate-limit fields, pinned to draft-ietf-httpapi-ratelimit-headers-11 (docs/adr/0012
 * §7): both are Structured Field Lists (RFC 9651) of Items whose bare item is a String, the
 * policy name, with Integer parameters, serialized canonically:
 *
 *   RateLimit-Policy: "burst";q=100;w=1, "daily";q=100000;w=86400
 *   RateLimit: "burst";r=42;t=1, "daily";r=99000;t=3600
 *
 * No parameter identifies the key (no `pk`). `compileRateHeaders` runs once per key when its
 * limits are compiled and may allocate; `rateLimitHeader` runs per request and only concatenates
 * precomputed prefixes with numbers the limiter keeps in preallocated arrays.
 */
import type { RatePolicy } from './limits.types.ts';

/** RFC 9651 §3.3.1: Integers have at most 15 decimal digits. */
const SF_INTEGER_MAX = 999_999_999_999_999;

/** One key's policies, compiled: `prefixes[i]` is `"name";r=` (with `, ` before all but the first). */
export type RateHeaders = {
  readonly policy: string;
  readonly prefixes: readonly string[];
};

/** RFC 9651 §4.1.6; names matching POLICY_NAME_RE never need an escape, others still serialize. */
function sfString(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value)) {
    throw new RangeError(`a Structured Field String holds printable ASCII only: ${value}`);
  }
  return `"${value.replace(/[\\"]/g, '\\$&')}"`;
}

/** Non-negative integers as they are; anything else clamped so the field stays well formed. */
function sfInteger(n: number): number {
  return n >= 0 ? Math.min(Math.floor(n), SF_INTEGER_MAX) : 0;
}

export function policyHeader(policies: readonly RatePolicy[]): string {
  return policies
    .map((p) => `${sfString(p.name)};q=${sfInteger(p.limit)};w=${sfInteger(p.windowSeconds)}`)
    .join(', ');
}

export function compileRateHeaders(policies: readonly RatePolicy[]): RateHeaders {
  return {
    policy: policyHeader(policies),
    prefixes: policies.map((p, i) => `${i === 0 ? '' : ', '}${sfString(p.name)};r=`),
  };
}

/**
 * `remaining[i]` and `resetSeconds[i]` belong to the i-th policy given to `compileRateHeaders`
 * (parallel arrays, typically a Float64Array per key the limiter refills in place).
 */
export function rateLimitHeader(
  compiled: RateHeaders,
  remaining: ArrayLike<number>,
  resetSeconds: ArrayLike<number>,
): string {
  const { prefixes } = compiled;
  let header = '';
  for (let i = 0; i < prefixes.length; i += 1) {
    header += prefixes[i]! + sfInteger(remaining[i] ?? 0) + ';t=' + sfInteger(resetSeconds[i] ?? 0);
  }
  return header;
}
