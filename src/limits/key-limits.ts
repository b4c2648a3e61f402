/**
 * A key's limits as the request path reads them: compiled once when the key is loaded into the
 * key cache, so no request parses a CIDR or a policy (SPEC §11, docs/adr/0012-per-key-limits.md).
 */
import { compileRateHeaders, type RateHeaders } from './headers.ts';
import { compileAllowedIps, type IpMatcher } from './ip-allow.ts';
import type { RatePolicy } from './limits.types.ts';
import type { QuotaLimits } from './quota-credit.ts';

export type RateLimits = {
  readonly policies: readonly RatePolicy[];
  /** `RateLimit-Policy`, and the prefixes `RateLimit` is built from per request. */
  readonly headers: RateHeaders;
};

export type KeyLimits = {
  /**
   * What the key's counters belong to: `limits_id`, copied by rotate, so a key and its
   * successor in their overlap share one window and one quota (else rotating doubles the rate).
   */
  subject: string;
  /** The allowed client addresses; null: any address. */
  allowsIp: IpMatcher | null;
  /** The key's own rate limits, else the org default; null: none. */
  rate: RateLimits | null;
  /** The subject's quota (its generation as loaded); null: none. */
  quota: QuotaLimits | null;
};

/** The stored configuration of one key. */
export type KeyLimitsConfig = {
  keyId: string;
  limitsId: string | null;
  allowedIps: readonly string[];
  /** The key's own policies; [] follows the org default. */
  rateLimits: readonly RatePolicy[];
  orgRateLimits: readonly RatePolicy[];
  /** The quota's generation, when the subject has a quota. */
  quotaGeneration: number | null;
};

/** Null when the key has no limit at all: the request path then checks nothing. */
export function compileLimits(config: KeyLimitsConfig): KeyLimits | null {
  const policies = config.rateLimits.length > 0 ? config.rateLimits : config.orgRateLimits;
  const quota = config.quotaGeneration === null ? null : { generation: config.quotaGeneration };
  if (config.allowedIps.length === 0 && policies.length === 0 && !quota) return null;
  return {
    subject: config.limitsId ?? config.keyId,
    allowsIp: config.allowedIps.length > 0 ? compileAllowedIps(config.allowedIps) : null,
    rate: policies.length > 0 ? { policies, headers: compileRateHeaders(policies) } : null,
    quota,
  };
}

/** Stored policies (jsonb, snake_case) as the domain reads them. */
export function policiesFromJson(value: unknown): RatePolicy[] {
  if (!Array.isArray(value)) return [];
  return value.map((p: { name: string; limit: number; window_seconds: number }) => ({
    name: p.name,
    limit: Number(p.limit),
    windowSeconds: Number(p.window_seconds),
  }));
}

export function policiesToJson(
  policies: readonly RatePolicy[],
): { name: string; limit: number; window_seconds: number }[] {
  return policies.map((p) => ({ name: p.name, limit: p.limit, window_seconds: p.windowSeconds }));
}
