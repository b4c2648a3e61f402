/** A rate limit of a key: at most `limit` requests per fixed window of `windowSeconds`. */
export type RatePolicy = { name: string; limit: number; windowSeconds: number };

/** Also a valid Structured Field String without escapes, so headers can embed it as is. */
export const POLICY_NAME_RE = /^[a-z][a-z0-9_-]{0,31}$/;
export const MAX_RATE_POLICIES = 3;
export const RATE_LIMIT_MAX = 1_000_000_000;
/** 31 days: a monthly window. */
export const WINDOW_SECONDS_MAX = 2_678_400;
export const MAX_ALLOWED_IPS = 100;

/** A quota: `limit` per key (or per refill period), refilled to `amount` each UTC day or month. */
export type QuotaConfig = {
  limit: number;
  refill: { interval: 'day' | 'month'; amount: number } | null;
};
export const QUOTA_MAX = 1_000_000_000_000;
/** Verify's `cost`: what one verification charges the quota (0 checks without spending). */
export const COST_MAX = 1000;
