/**
 * The Demo org's sample traffic: a deterministic generator (seeded PRNG, the caller passes "now")
 * of usage events for the story the first look at /admin tells. Pure, so its promises (a trend,
 * a spike, an old key still in use, a revoked key still tried) are unit-tested; seed.ts creates
 * the keys and sends these events through the normal queue and worker.
 */
import type { Outcome } from '../usage/usage.types.ts';

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;
/** Days of steady traffic shown on the first look. */
export const HISTORY_DAYS = 14;

export type SampleEvent = {
  occurredAt: number;
  method: string;
  route: string;
  status: number;
  latencyMs: number;
  ip: string;
  userAgent: string;
  outcome: Outcome;
};

type Endpoint = { method: string; route: string; weight: number; latencyMs: number };

/** One stream of traffic of one key: requests per hour at the daily peak, and its shape. */
export type Traffic = {
  from: number;
  to: number;
  peakPerHour: number;
  endpoints: readonly Endpoint[];
  ips: readonly string[];
  userAgent: string;
  rate4xx: number;
  rate5xx: number;
  /** Multiplies the rate from this instant on (a spike). */
  surge?: { from: number; factor: number };
  /** A window of elevated 5xx (an incident on the chart). */
  incident?: { from: number; to: number; rate5xx: number };
  outcome?: Outcome;
  status?: number;
};

/** mulberry32: a small, fast, seeded PRNG; good enough for sample data. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Busy in the UTC afternoon, quiet at night: 0.25 to 1 of the peak. */
export function dailyShape(at: number): number {
  const hour = new Date(at).getUTCHours() + new Date(at).getUTCMinutes() / 60;
  return 0.25 + 0.75 * Math.max(0, Math.cos(((hour - 14) / 24) * 2 * Math.PI)) ** 1.5;
}

function pick<T extends { weight: number }>(items: readonly T[], r: number): T {
  const total = items.reduce((a, i) => a + i.weight, 0);
  let x = r * total;
  for (const item of items) {
    x -= item.weight;
    if (x <= 0) return item;
  }
  return items[items.length - 1] as T;
}

/** Log-normal around `median` (Box–Muller): most requests fast, a long slow tail. */
function latency(median: number, rand: () => number): number {
  const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return Math.round(median * Math.exp(0.45 * z) * 100) / 100;
}

function statusOf(t: Traffic, at: number, rand: () => number): number {
  if (t.status !== undefined) return t.status;
  const r5 =
    t.incident && at >= t.incident.from && at < t.incident.to ? t.incident.rate5xx : t.rate5xx;
  const r = rand();
  if (r < r5) return rand() < 0.7 ? 503 : 500;
  if (r < r5 + t.rate4xx) return [400, 404, 404, 422, 429][Math.floor(rand() * 5)] as number;
  return rand() < 0.15 ? 201 : 200;
}

/** The events of one traffic stream, hour by hour, in time order. */
export function generate(t: Traffic, rand: () => number): SampleEvent[] {
  const events: SampleEvent[] = [];
  for (let hour = Math.floor(t.from / HOUR) * HOUR; hour < t.to; hour += HOUR) {
    const start = Math.max(hour, t.from);
    const end = Math.min(hour + HOUR, t.to);
    const surge = t.surge && hour >= t.surge.from ? t.surge.factor : 1;
    const expected = t.peakPerHour * dailyShape(hour) * surge * ((end - start) / HOUR);
    const count = Math.floor(expected * (0.8 + 0.4 * rand()) + rand());
    const times = Array.from({ length: count }, () => start + Math.floor(rand() * (end - start)));
    for (const at of times.sort((a, b) => a - b)) {
      const endpoint = pick(t.endpoints, rand());
      events.push({
        occurredAt: at,
        method: endpoint.method,
        route: endpoint.route,
        status: statusOf(t, at, rand),
        latencyMs: latency(endpoint.latencyMs, rand),
        ip: t.ips[Math.floor(rand() * t.ips.length)] as string,
        userAgent: t.userAgent,
        outcome: t.outcome ?? 'success',
      });
    }
  }
  return events;
}
