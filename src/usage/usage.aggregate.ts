/**
 * Pure aggregation of inserted events into rollup rows. Rows come out sorted by key (then time,
 * then route) so every worker upserts in the same order and concurrent batches cannot deadlock.
 */
import { bucketOf, emptyHistogram } from './histogram.ts';
import type { Batch } from './usage.batch.ts';
import { LIMITED_INDEX } from './usage.types.ts';

/** What every totals, hourly and daily row counts for its key. */
type Counts = {
  keyId: string;
  orgId: string;
  requests: number;
  errors4xx: number;
  errors5xx: number;
  denied: number;
  /** Refusals by a limit (rate, quota, allowed IPs): neither use nor denied attempts. */
  limited: number;
};

export type TotalsRow = Counts & {
  firstUsedAt: Date | null;
  lastUsedAt: Date | null;
  lastUsedIp: string | null;
  lastDeniedAt: Date | null;
  lastLimitedAt: Date | null;
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
  limited: number;
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
const DAY_MS = 86_400_000;

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

/** A key's totals while a batch is summed: times as epoch ms (a Date only per row at the end). */
type TotalsAcc = Counts & {
  first: number;
  last: number;
  lastIp: string | null;
  lastDenied: number;
  lastLimited: number;
};

const dateOr = (ms: number): Date | null => (Number.isFinite(ms) ? new Date(ms) : null);

function periodRow(keyId: string, orgId: string, period: string): PeriodRow {
  const hist = emptyHistogram();
  return {
    keyId,
    orgId,
    period,
    requests: 0,
    errors4xx: 0,
    errors5xx: 0,
    denied: 0,
    limited: 0,
    latencySumMs: 0,
    hist,
  };
}

/** What an event is: 0 use, 1 a denied attempt, 2 a refusal by a limit. */
type Kind = 0 | 1 | 2;
const kindOf = (o: number | undefined): Kind => (o === 0 ? 0 : LIMITED_INDEX[o ?? 0] ? 2 : 1);

function countPeriod(row: PeriodRow, kind: Kind, status: number, latencyMs: number): void {
  if (kind !== 0) {
    if (kind === 1) row.denied += 1;
    else row.limited += 1;
    return;
  }
  row.requests += 1;
  if (status >= 400 && status < 500) row.errors4xx += 1;
  if (status >= 500) row.errors5xx += 1;
  row.latencySumMs += latencyMs;
  const b = bucketOf(latencyMs);
  row.hist[b] = (row.hist[b] ?? 0) + 1;
}

function countTotals(row: TotalsAcc, b: Batch, i: number, kind: Kind): void {
  const t = b.t[i] ?? 0;
  if (kind === 1) {
    row.denied += 1;
    if (!(t < row.lastDenied)) row.lastDenied = t;
    return;
  }
  if (kind === 2) {
    row.limited += 1;
    if (!(t < row.lastLimited)) row.lastLimited = t;
    return;
  }
  const status = b.s[i] ?? 0;
  row.requests += 1;
  if (status >= 400 && status < 500) row.errors4xx += 1;
  if (status >= 500) row.errors5xx += 1;
  if (!(t >= row.first)) row.first = t;
  // The later event wins, and of two at one instant the one later in the batch.
  if (!(t < row.last)) {
    row.last = t;
    row.lastIp = b.ip[i] ?? null;
  }
}

/** A key's UTC day: its daily row and its routes (keyed by route and method index). */
type DaySlot = { daily: PeriodRow; routes: Map<number, RouteRow> };

function countRoute(slot: DaySlot, id: number, b: Batch, i: number, day: string): void {
  let row = slot.routes.get(id);
  const t = b.t[i] ?? 0;
  if (!row) {
    const route = b.routes[b.r[i] ?? 0] ?? '';
    const { keyId, orgId } = slot.daily;
    row = {
      keyId,
      orgId,
      day,
      method: b.m[i] ?? '',
      route,
      requests: 0,
      errors: 0,
      latencySumMs: 0,
      firstAt: t,
    };
    slot.routes.set(id, row);
  }
  row.requests += 1;
  if ((b.s[i] ?? 0) >= 400) row.errors += 1;
  row.latencySumMs += b.l[i] ?? 0;
  if (t < row.firstAt) row.firstAt = t;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const byPeriod = (a: PeriodRow, b: PeriodRow) => cmp(a.keyId, b.keyId) || cmp(a.period, b.period);
const byRoute = (a: RouteRow, b: RouteRow) =>
  cmp(a.keyId, b.keyId) || cmp(a.day, b.day) || cmp(a.method, b.method) || cmp(a.route, b.route);

/**
 * Sums a batch into its rollup rows, reading its columns by index. Rows are found by numbers
 * (key index with the hour or day), not by strings built per event. `labels`: the caller's
 * period labels, when it has formatted this batch's hours already.
 */
export function aggregate(
  b: Batch,
  labels: ReturnType<typeof periodLabels> = periodLabels(),
): Rollups {
  const n = b.id.length;
  const nKeys = b.keys.length;
  const totals: (TotalsAcc | undefined)[] = new Array<TotalsAcc | undefined>(nKeys);
  const hourly = new Map<number, PeriodRow>();
  const days = new Map<number, DaySlot>();
  const methods = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const k = b.k[i] ?? 0;
    const t = b.t[i] ?? 0;
    const kind = kindOf(b.o[i]);
    const [keyId = '', orgId = ''] = b.keys[k] ?? [];
    const status = b.s[i] ?? 0;
    const latency = b.l[i] ?? 0;
    const { hour, day } = labels(t);
    let total = totals[k];
    if (!total) {
      total = {
        keyId,
        orgId,
        requests: 0,
        errors4xx: 0,
        errors5xx: 0,
        denied: 0,
        limited: 0,
        first: NaN,
        last: NaN,
        lastIp: null,
        lastDenied: NaN,
        lastLimited: NaN,
      };
      totals[k] = total;
    }
    countTotals(total, b, i, kind);
    const h = Math.floor(t / HOUR_MS) * nKeys + k;
    let hourRow = hourly.get(h);
    if (!hourRow) hourly.set(h, (hourRow = periodRow(keyId, orgId, hour)));
    countPeriod(hourRow, kind, status, latency);
    const d = Math.floor(t / DAY_MS) * nKeys + k;
    let slot = days.get(d);
    if (!slot) days.set(d, (slot = { daily: periodRow(keyId, orgId, day), routes: new Map() }));
    countPeriod(slot.daily, kind, status, latency);
    if (kind !== 0) continue;
    const m = b.m[i] ?? '';
    let mi = methods.get(m);
    if (mi === undefined) methods.set(m, (mi = methods.size));
    countRoute(slot, (b.r[i] ?? 0) * (n + 1) + mi, b, i, day);
  }
  const slots = [...days.values()];
  return {
    totals: totals
      .filter((r) => r !== undefined)
      .sort((x, y) => cmp(x.keyId, y.keyId))
      .map((r) => ({
        keyId: r.keyId,
        orgId: r.orgId,
        requests: r.requests,
        errors4xx: r.errors4xx,
        errors5xx: r.errors5xx,
        denied: r.denied,
        limited: r.limited,
        firstUsedAt: dateOr(r.first),
        lastUsedAt: dateOr(r.last),
        lastUsedIp: r.lastIp,
        lastDeniedAt: dateOr(r.lastDenied),
        lastLimitedAt: dateOr(r.lastLimited),
      })),
    hourly: [...hourly.values()].sort(byPeriod),
    daily: slots.map((s) => s.daily).sort(byPeriod),
    routes: slots.flatMap((s) => [...s.routes.values()]).sort(byRoute),
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
  return [...out.values()].sort(byRoute);
}
