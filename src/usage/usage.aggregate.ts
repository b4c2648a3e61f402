/**
 * Pure aggregation of inserted events into rollup rows. Rows come out sorted by key (then time,
 * then route) so every worker upserts in the same order and concurrent batches cannot deadlock.
 */
import { bucketOf, emptyHistogram } from './histogram.ts';
import type { UsageEvent } from './usage.types.ts';

export type TotalsRow = {
  keyId: string;
  orgId: string;
  requests: number;
  errors4xx: number;
  errors5xx: number;
  denied: number;
  firstUsedAt: Date | null;
  lastUsedAt: Date | null;
  lastUsedIp: string | null;
  lastDeniedAt: Date | null;
};

export type PeriodRow = {
  keyId: string;
  orgId: string;
  /** Hour start (hourly) or UTC day as YYYY-MM-DD (daily). */
  period: string;
  requests: number;
  errors4xx: number;
  errors5xx: number;
  denied: number;
  latencySumMs: number;
  hist: number[];
};

export type RouteRow = {
  keyId: string;
  orgId: string;
  day: string;
  method: string;
  route: string;
  requests: number;
  errors: number;
  latencySumMs: number;
  /** The earliest event of the row (epoch ms): the route cap keeps routes by first appearance. */
  firstAt: number;
};

export type Rollups = {
  totals: TotalsRow[];
  hourly: PeriodRow[];
  daily: PeriodRow[];
  routes: RouteRow[];
};

const HOUR_MS = 3_600_000;

/**
 * Hour, day and month labels of epoch milliseconds, formatted once per hour of a batch: a batch spans a
 * few hours, and formatting a Date per event was ~10 % of the worker's CPU.
 */
export function periodLabels() {
  type Labels = { hour: string; day: string; month: string };
  const hours = new Map<number, Labels>();
  return (ms: number): Labels => {
    const start = ms - (ms % HOUR_MS);
    let labels = hours.get(start);
    if (!labels) {
      const hour = new Date(start).toISOString();
      labels = { hour, day: hour.slice(0, 10), month: hour.slice(0, 7) };
      hours.set(start, labels);
    }
    return labels;
  };
}

function later(a: Date | null, ms: number): boolean {
  return a === null || ms >= a.getTime();
}

function addPeriod(map: Map<string, PeriodRow>, e: UsageEvent, period: string): void {
  const id = `${e.keyId}|${period}`;
  let row = map.get(id);
  if (!row) {
    row = {
      keyId: e.keyId,
      orgId: e.orgId,
      period,
      requests: 0,
      errors4xx: 0,
      errors5xx: 0,
      denied: 0,
      latencySumMs: 0,
      hist: emptyHistogram(),
    };
    map.set(id, row);
  }
  if (e.outcome !== 'success') {
    row.denied += 1;
    return;
  }
  row.requests += 1;
  if (e.status >= 400 && e.status < 500) row.errors4xx += 1;
  if (e.status >= 500) row.errors5xx += 1;
  row.latencySumMs += e.latencyMs;
  const b = bucketOf(e.latencyMs);
  row.hist[b] = (row.hist[b] ?? 0) + 1;
}

function addTotals(map: Map<string, TotalsRow>, e: UsageEvent): void {
  let row = map.get(e.keyId);
  if (!row) {
    row = {
      keyId: e.keyId,
      orgId: e.orgId,
      requests: 0,
      errors4xx: 0,
      errors5xx: 0,
      denied: 0,
      firstUsedAt: null,
      lastUsedAt: null,
      lastUsedIp: null,
      lastDeniedAt: null,
    };
    map.set(e.keyId, row);
  }
  if (e.outcome !== 'success') {
    row.denied += 1;
    if (later(row.lastDeniedAt, e.occurredAt)) row.lastDeniedAt = new Date(e.occurredAt);
    return;
  }
  row.requests += 1;
  if (e.status >= 400 && e.status < 500) row.errors4xx += 1;
  if (e.status >= 500) row.errors5xx += 1;
  if (row.firstUsedAt === null || e.occurredAt < row.firstUsedAt.getTime()) {
    row.firstUsedAt = new Date(e.occurredAt);
  }
  if (later(row.lastUsedAt, e.occurredAt)) {
    row.lastUsedAt = new Date(e.occurredAt);
    row.lastUsedIp = e.ip;
  }
}

function addRoute(map: Map<string, RouteRow>, e: UsageEvent, day: string): void {
  if (e.outcome !== 'success') return;
  const id = `${e.keyId}|${day}|${e.method}|${e.route}`;
  let row = map.get(id);
  if (!row) {
    row = {
      keyId: e.keyId,
      orgId: e.orgId,
      day,
      method: e.method,
      route: e.route,
      requests: 0,
      errors: 0,
      latencySumMs: 0,
      firstAt: e.occurredAt,
    };
    map.set(id, row);
  }
  row.requests += 1;
  if (e.status >= 400) row.errors += 1;
  row.latencySumMs += e.latencyMs;
  if (e.occurredAt < row.firstAt) row.firstAt = e.occurredAt;
}

const byKey = <T extends { keyId: string }>(
  rows: Iterable<T>,
  rest: (r: T) => string = () => '',
): T[] =>
  [...rows].sort((a, b) =>
    a.keyId === b.keyId ? (rest(a) < rest(b) ? -1 : 1) : a.keyId < b.keyId ? -1 : 1,
  );

/** `labels`: the caller's period labels, when it has formatted this batch's hours already. */
export function aggregate(
  events: readonly UsageEvent[],
  labels: ReturnType<typeof periodLabels> = periodLabels(),
): Rollups {
  const totals = new Map<string, TotalsRow>();
  const hourly = new Map<string, PeriodRow>();
  const daily = new Map<string, PeriodRow>();
  const routes = new Map<string, RouteRow>();
  for (const e of events) {
    const { hour, day } = labels(e.occurredAt);
    addTotals(totals, e);
    addPeriod(hourly, e, hour);
    addPeriod(daily, e, day);
    addRoute(routes, e, day);
  }
  return {
    totals: byKey(totals.values()),
    hourly: byKey(hourly.values(), (r) => r.period),
    daily: byKey(daily.values(), (r) => r.period),
    routes: byKey(routes.values(), (r) => `${r.day}|${r.method}|${r.route}`),
  };
}

/** The route a key's day records beyond its cap of distinct routes. */
export const OTHER_ROUTE = '(other)';

/**
 * Caps the distinct routes of each key and day in the per-route rollup: `known` lists the
 * (key, day, method, route) rows already stored; a route not among them is kept while the
 * key's day has fewer than `cap` routes, else its figures go to `(other)` (same method). Raw
 * events keep their route; only the rollup, read for top endpoints, is bounded. Within a batch
 * new routes are taken in order of their first event, the rebuild's rule; across batches the
 * order is the batches' (a late batch of older events can differ from a rebuild). Rows come back
 * sorted as `aggregate` sorts them. The cap is soft under concurrency: two workers adding new
 * routes of one key and day at once can each see room for theirs.
 */
export function capRoutes(
  rows: readonly RouteRow[],
  known: readonly { keyId: string; day: string; method: string; route: string }[],
  cap: number,
): RouteRow[] {
  const seen = new Map<string, Set<string>>();
  const dayOf = (keyId: string, day: string) => {
    const id = `${keyId}|${day}`;
    let set = seen.get(id);
    if (!set) seen.set(id, (set = new Set()));
    return set;
  };
  for (const k of known) dayOf(k.keyId, k.day).add(`${k.method} ${k.route}`);
  const out = new Map<string, RouteRow>();
  // New routes claim the room left in order of their first event, as the rebuild ranks them.
  const byFirst = [...rows].sort(
    (a, b) =>
      a.firstAt - b.firstAt ||
      (a.method < b.method ? -1 : a.method > b.method ? 1 : 0) ||
      (a.route < b.route ? -1 : a.route > b.route ? 1 : 0),
  );
  for (const r of byFirst) {
    const routes = dayOf(r.keyId, r.day);
    const name = `${r.method} ${r.route}`;
    let route = r.route;
    if (!routes.has(name)) {
      if (routes.size < cap || r.route === OTHER_ROUTE) routes.add(name);
      else route = OTHER_ROUTE;
    }
    const id = `${r.keyId}|${r.day}|${r.method}|${route}`;
    const row = out.get(id);
    if (row) {
      row.requests += r.requests;
      row.errors += r.errors;
      row.latencySumMs += r.latencySumMs;
    } else out.set(id, { ...r, route });
  }
  return byKey(out.values(), (r) => `${r.day}|${r.method}|${r.route}`);
}
