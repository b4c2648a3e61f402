import type { Clock } from '../platform/clock.ts';
import type { Database } from '../platform/db.ts';
import { AppError } from '../platform/errors.ts';
import { emptyHistogram, mergeInto, quantile } from './histogram.ts';
import * as q from './analytics.queries.ts';
import { recentEvents } from './events.queries.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
export const MAX_WINDOW_DAYS = 400;
export const MAX_HOURLY_DAYS = 14;
/** Keys read per statement when listing every dormant key. */
export const DORMANT_PAGE = 1000;

export type Granularity = 'day' | 'hour';
type Agg = {
  requests: number;
  e4: number;
  e5: number;
  denied: number;
  limited: number;
  latencySum: number;
  hist: number[];
};

const round3 = (n: number | null): number | null =>
  n === null ? null : Math.round(n * 1000) / 1000;

function summarize(a: Agg) {
  return {
    requests: a.requests,
    errors_4xx: a.e4,
    errors_5xx: a.e5,
    denied: a.denied,
    limited: a.limited,
    error_rate: a.requests > 0 ? round3((a.e4 + a.e5) / a.requests) : null,
    avg_latency_ms: a.requests > 0 ? round3(a.latencySum / a.requests) : null,
    p50_latency_ms: round3(quantile(a.hist, 0.5)),
    p95_latency_ms: round3(quantile(a.hist, 0.95)),
    p99_latency_ms: round3(quantile(a.hist, 0.99)),
  };
}

function add(a: Agg, r: q.PeriodUsage): Agg {
  a.requests += Number(r.requests);
  a.e4 += Number(r.errors_4xx);
  a.e5 += Number(r.errors_5xx);
  a.denied += Number(r.denied);
  a.limited += Number(r.limited);
  a.latencySum += r.latency_sum_ms;
  mergeInto(a.hist, r.latency_hist);
  return a;
}

const newAgg = (): Agg => ({
  requests: 0,
  e4: 0,
  e5: 0,
  denied: 0,
  limited: 0,
  latencySum: 0,
  hist: emptyHistogram(),
});

/** Validates and aligns a window to whole buckets: [floor(from), ceil(to)). */
export function alignWindow(
  from: Date,
  to: Date,
  granularity: Granularity,
): { from: Date; to: Date } {
  const unit = granularity === 'hour' ? HOUR_MS : DAY_MS;
  const span = to.getTime() - from.getTime();
  const fail = (detail: string) => new AppError('validation_failed', { detail });
  if (span <= 0) throw fail('from must be before to');
  if (span > MAX_WINDOW_DAYS * DAY_MS)
    throw fail(`the window is limited to ${MAX_WINDOW_DAYS} days`);
  if (granularity === 'hour' && span > MAX_HOURLY_DAYS * DAY_MS) {
    throw fail(`granularity=hour is limited to ${MAX_HOURLY_DAYS} days`);
  }
  const start = from.getTime() - (from.getTime() % unit);
  const end = Math.ceil(to.getTime() / unit) * unit;
  return { from: new Date(start), to: new Date(end) };
}

export function createAnalyticsService(deps: {
  db: Database;
  clock: Clock;
  flushIntervalMs: number;
  spike: { factor: number; minRequests: number };
}) {
  const { db, clock } = deps;

  /** Usage is complete up to the oldest job not yet ingested, minus one flush window. */
  async function dataAsOf(): Promise<Date> {
    const now = clock.now().getTime();
    const pending = await q.oldestPendingUsageJob(db);
    const upTo = Math.min(now, pending ? pending.getTime() : now);
    return new Date(upTo - deps.flushIntervalMs);
  }

  /** The org usage query's parameters: one `now` for the dormant rule and the spike window. */
  function orgUsageParams(orgId: string, dormantDays: number): q.OrgUsageParams {
    const now = clock.now();
    return {
      orgId,
      now,
      dormantBefore: new Date(now.getTime() - dormantDays * DAY_MS),
      spikeFactor: deps.spike.factor,
      spikeMin: deps.spike.minRequests,
    };
  }

  async function orgUsage(orgId: string, dormantDays: number, page: q.OrgUsagePage) {
    const params = orgUsageParams(orgId, dormantDays);
    const [{ summary, rows }, asOf] = await Promise.all([q.orgUsage(db, params, page), dataAsOf()]);
    return {
      summary,
      rows: rows.slice(0, page.limit),
      hasMore: rows.length > page.limit,
      dataAsOf: asOf,
    };
  }

  /**
   * Every dormant key of the org (the rule of the org usage page's `dormant` flag), least
   * recently used first and never-used keys last, read page by page with one `now` so the rule
   * is the same on every page.
   */
  async function dormantKeys(
    orgId: string,
    dormantDays: number,
    pageSize = DORMANT_PAGE,
  ): Promise<q.KeyUsageRow[]> {
    const params = orgUsageParams(orgId, dormantDays);
    const keys: q.KeyUsageRow[] = [];
    let after: q.OrgUsagePage['after'];
    for (;;) {
      const { rows } = await q.orgUsage(db, params, {
        sort: 'last_used_at',
        order: 'asc',
        status: undefined,
        dormant: true,
        limit: pageSize,
        after,
      });
      keys.push(...rows.slice(0, pageSize));
      const last = rows[pageSize - 1];
      if (rows.length <= pageSize || !last) return keys;
      after = { value: last.last_used_at?.toISOString() ?? null, keyId: last.key_id };
    }
  }

  async function keyUsage(
    orgId: string,
    keyId: string,
    window: { from: Date; to: Date; granularity: Granularity },
  ) {
    const { from, to } = alignWindow(window.from, window.to, window.granularity);
    const unit = window.granularity === 'hour' ? HOUR_MS : DAY_MS;
    const dayFrom = new Date(from.getTime() - (from.getTime() % DAY_MS));
    const dayTo = new Date(Math.ceil(to.getTime() / DAY_MS) * DAY_MS);
    const [periods, totals, tm, endpoints, recent, asOf] = await Promise.all([
      q.keyPeriods(db, orgId, keyId, window.granularity, from, to),
      q.keyTotals(db, orgId, keyId),
      q.todayAndMonth(db, orgId, keyId, clock.now()),
      q.topEndpoints(db, orgId, keyId, dayFrom, dayTo),
      recentEvents(db, orgId, keyId, 20, clock.now()),
      dataAsOf(),
    ]);
    const byStart = new Map(periods.map((p) => [p.start.getTime(), p]));
    const series = [];
    for (let t = from.getTime(); t < to.getTime(); t += unit) {
      const row = byStart.get(t);
      const agg = row ? add(newAgg(), row) : newAgg();
      const s = summarize(agg);
      series.push({
        start: new Date(t),
        requests: s.requests,
        errors_4xx: s.errors_4xx,
        errors_5xx: s.errors_5xx,
        denied: s.denied,
        limited: s.limited,
        avg_latency_ms: s.avg_latency_ms,
        p95_latency_ms: s.p95_latency_ms,
      });
    }
    const total = periods.reduce(add, newAgg());
    return {
      dataAsOf: asOf,
      totals,
      window: { from, to, ...summarize(total) },
      today: { requests: Number(tm.today) },
      thisMonth: { requests: Number(tm.month) },
      series,
      topEndpoints: endpoints,
      recentEvents: recent,
    };
  }

  /** A key's authenticated requests since an instant (an old key's use since its rotation). */
  const requestsSince = (orgId: string, keyId: string, since: Date): Promise<number> =>
    q.requestsSince(db, orgId, keyId, since);

  return { orgUsage, dormantKeys, keyUsage, requestsSince, dataAsOf };
}

export type AnalyticsService = ReturnType<typeof createAnalyticsService>;
