/**
 * The org at a glance (issue 20): its requests, errors and refusals per UTC day over the last
 * `days` days, zero-filled, and its busiest keys, from the daily rollups only.
 */
import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import * as q from './org-trend.queries.ts';

const DAY_MS = 86_400_000;
const BUSIEST = 5;

const dayOf = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

export function createOrgTrend(deps: { db: Database; clock: Clock }) {
  return async function orgTrend(orgId: string, days: number) {
    const today = Math.floor(deps.clock.now().getTime() / DAY_MS) * DAY_MS;
    // The window ends with today (partial) and spans `days` UTC days.
    const from = today - (days - 1) * DAY_MS;
    const to = today + DAY_MS;
    const range = { from: dayOf(from), to: dayOf(to) };
    const [rows, busiest] = await Promise.all([
      q.orgDays(deps.db, orgId, range.from, range.to),
      q.busiestKeys(deps.db, orgId, { ...range, limit: BUSIEST }),
    ]);
    const byDay = new Map(rows.map((r) => [r.day, r]));
    const series = [];
    for (let t = from; t < to; t += DAY_MS) {
      const day = dayOf(t);
      const row = byDay.get(day);
      series.push({
        start: new Date(t),
        requests: row?.requests ?? 0,
        errors_4xx: row?.errors_4xx ?? 0,
        errors_5xx: row?.errors_5xx ?? 0,
        denied: row?.denied ?? 0,
        limited: row?.limited ?? 0,
      });
    }
    return { from: new Date(from), to: new Date(to), series, busiest };
  };
}

export type OrgTrend = ReturnType<typeof createOrgTrend>;
