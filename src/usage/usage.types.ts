export const OUTCOMES = ['success', 'revoked', 'expired', 'insufficient_scope'] as const;
/** `success`: authenticated. The others: a known key was refused (denied attempts). */
export type Outcome = (typeof OUTCOMES)[number];

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

/** Latency as stored (real, 3 decimals): rollups and a rebuild from raw rows then agree exactly. */
export const storedLatency = (ms: number): number => Math.fround(Math.round(ms * 1000) / 1000);
