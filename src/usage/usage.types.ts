/**
 * `success`: authenticated. `revoked`, `expired`, `insufficient_scope`: a known key was refused
 * (denied attempts). `rate_limited`, `quota_exceeded`, `ip_denied`: a working key was refused by
 * one of its limits (SPEC §11), counted as `limited`. Appended, never reordered: jobs carry the
 * index (a worker of the version before dead-letters an index it does not know, so roll workers
 * out first).
 */
export const OUTCOMES = [
  'success',
  'revoked',
  'expired',
  'insufficient_scope',
  'rate_limited',
  'quota_exceeded',
  'ip_denied',
] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const LIMITED_OUTCOMES = ['rate_limited', 'quota_exceeded', 'ip_denied'] as const;

/** By outcome index (as jobs carry it): a refusal by a limit, not a denied attempt. */
export const LIMITED_INDEX: readonly boolean[] = OUTCOMES.map((o) =>
  (LIMITED_OUTCOMES as readonly string[]).includes(o),
);

/** One usage event, as recorded by the middleware or reported by a gateway. */
export type UsageEvent = {
  eventId: string;
  orgId: string;
  keyId: string;
  /** Epoch milliseconds. */
  occurredAt: number;
  method: string;
  route: string;
  status: number;
  latencyMs: number;
  ip: string | null;
  userAgent: string | null;
  outcome: Outcome;
};

export const USER_AGENT_MAX = 256;
export const ROUTE_MAX = 200;
export const METHOD_MAX = 16;

// eslint-disable-next-line no-control-regex
const NEEDS_CLEANING = /[\u0000\uD800-\uDFFF]/;

/**
 * The one definition of the text an event stores (method, route, user agent), used by the
 * producers (cleanText) and by the worker's job schema alike, so a batch the API accepted
 * cannot fail the worker's check: no NUL (Postgres text refuses it), no unpaired surrogate half
 * (it would be stored as U+FFFD, not as sent), and at most `max` code points (characters, as
 * Postgres counts them; `.length` counts UTF-16 units, two per emoji).
 */
export function isStorableText(value: string, max: number): boolean {
  if (value.length <= max && !NEEDS_CLEANING.test(value)) return true;
  if (value.includes('\u0000') || !value.isWellFormed()) return false;
  let points = 0;
  for (const _ of value) if (++points > max) return false;
  return true;
}

/**
 * `value` made storable (isStorableText): NUL characters and unpaired surrogate halves dropped,
 * cut to `max` code points (a cut never splits a character).
 */
export function cleanText(value: string, max: number): string {
  // The common case (plain text, short enough) costs one regex test and no allocation.
  if (value.length <= max && !NEEDS_CLEANING.test(value)) return value;
  // eslint-disable-next-line no-control-regex
  const chars = Array.from(value.replace(/\u0000/g, ''));
  return chars
    .slice(0, max)
    .filter((c) => !/^[\uD800-\uDFFF]$/.test(c))
    .join('');
}

/** Latency as stored (real, 3 decimals): rollups and a rebuild from raw rows then agree exactly. */
export const storedLatency = (ms: number): number => Math.fround(Math.round(ms * 1000) / 1000);
