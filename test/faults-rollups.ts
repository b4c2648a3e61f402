/**
 * Checks shared by the fault tests: the raw events of an org hold no repeat, and every rollup of
 * the org equals what its raw events imply (so a count added twice or lost shows as a row).
 */
import { sql, type QueryExecutorProvider } from 'kysely';
import { LIMITED } from '../src/usage/rollups.queries.ts';

/** Denied attempts (dead key, missing scope), apart from refusals by a limit. */
const DENIED = sql`outcome <> 'success' and outcome <> all(${LIMITED})`;
const LIMITED_ROW = sql`outcome = any(${LIMITED})`;

export type RawIdentity = { rows: number; distinctRows: number; distinctIds: number };

export async function rawIdentity(db: QueryExecutorProvider, orgId: string): Promise<RawIdentity> {
  const { rows } = await sql<RawIdentity>`
    select count(*)::int as "rows",
      count(distinct (event_id, occurred_at))::int as "distinctRows",
      count(distinct event_id)::int as "distinctIds"
    from api_key_usage_events where org_id = ${orgId}`.execute(db);
  return rows[0] ?? { rows: 0, distinctRows: 0, distinctIds: 0 };
}

/** Raw rows per key: success (by status class) and denied (refusals by a limit apart). */
export type KeyCounts = { requests: number; e4xx: number; e5xx: number; denied: number };

export async function rawCountsByKey(
  db: QueryExecutorProvider,
  orgId: string,
): Promise<Map<string, KeyCounts>> {
  const { rows } = await sql<KeyCounts & { key_id: string }>`
    select key_id,
      count(*) filter (where outcome = 'success')::int as requests,
      count(*) filter (where outcome = 'success' and status between 400 and 499)::int as "e4xx",
      count(*) filter (where outcome = 'success' and status >= 500)::int as "e5xx",
      count(*) filter (where ${DENIED})::int as denied
    from api_key_usage_events where org_id = ${orgId} group by key_id`.execute(db);
  return new Map(rows.map(({ key_id, ...c }) => [key_id, c]));
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a));

/**
 * Every difference between the org's rollups (totals, hourly, daily, routes) and its raw events,
 * as readable lines; empty when they agree exactly (latency sums to 1e-6 relative).
 */
export async function rollupMismatches(
  db: QueryExecutorProvider,
  orgId: string,
): Promise<string[]> {
  const out: string[] = [];
  const totals = await sql<Record<string, unknown>>`
    with raw as (
      select key_id,
        count(*) filter (where outcome = 'success') as requests,
        count(*) filter (where outcome = 'success' and status between 400 and 499) as e4,
        count(*) filter (where outcome = 'success' and status >= 500) as e5,
        count(*) filter (where ${DENIED}) as denied,
        count(*) filter (where ${LIMITED_ROW}) as limited,
        max(occurred_at) filter (where ${LIMITED_ROW}) as last_limited,
        min(occurred_at) filter (where outcome = 'success') as first_used,
        max(occurred_at) filter (where outcome = 'success') as last_used
      from api_key_usage_events where org_id = ${orgId} group by key_id),
    t as (select * from api_key_usage_totals where org_id = ${orgId})
    select coalesce(raw.key_id, t.key_id) as key_id, raw.requests, t.request_count,
      raw.e4, t.errors_4xx, raw.e5, t.errors_5xx, raw.denied, t.denied_count, raw.limited,
      t.limited_count, raw.first_used, t.first_used_at, raw.last_used, t.last_used_at
    from raw full join t using (key_id)
    where raw.key_id is null and (t.request_count + t.denied_count + t.limited_count) > 0
       or t.key_id is null
       or raw.requests <> t.request_count or raw.e4 <> t.errors_4xx or raw.e5 <> t.errors_5xx
       or raw.denied <> t.denied_count or raw.limited <> t.limited_count
       or raw.last_limited is distinct from t.last_limited_at
       or raw.first_used is distinct from t.first_used_at
       or raw.last_used is distinct from t.last_used_at`.execute(db);
  for (const r of totals.rows) out.push(`totals ${JSON.stringify(r)}`);

  for (const [table, period, expr] of [
    ['api_key_usage_hourly', 'hour', sql`date_trunc('hour', occurred_at)`],
    ['api_key_usage_daily', 'day', sql`(occurred_at at time zone 'UTC')::date`],
  ] as const) {
    const { rows } = await sql<{
      key_id: string;
      period: string;
      raw: number[] | null;
      roll: number[] | null;
      raw_latency: number | null;
      roll_latency: number | null;
      hist_sum: number | null;
    }>`
      with raw as (
        select key_id, ${expr} as period,
          count(*) filter (where outcome = 'success')::int as requests,
          count(*) filter (where outcome = 'success' and status between 400 and 499)::int as e4,
          count(*) filter (where outcome = 'success' and status >= 500)::int as e5,
          count(*) filter (where ${DENIED})::int as denied,
          count(*) filter (where ${LIMITED_ROW})::int as limited,
          coalesce(sum(latency_ms::float8) filter (where outcome = 'success'), 0) as latency
        from api_key_usage_events where org_id = ${orgId} group by 1, 2),
      roll as (
        select key_id, ${sql.ref(period)} as period, requests::int, errors_4xx::int as e4,
          errors_5xx::int as e5, denied::int, limited::int, latency_sum_ms as latency,
          (select sum(x) from unnest(latency_hist) x)::int as hist_sum
        from ${sql.table(table)} where org_id = ${orgId})
      select coalesce(raw.key_id, roll.key_id) as key_id,
        coalesce(raw.period, roll.period)::text as period,
        case when raw.key_id is null then null else array[raw.requests, raw.e4, raw.e5, raw.denied, raw.limited] end as raw,
        case when roll.key_id is null then null else array[roll.requests, roll.e4, roll.e5, roll.denied, roll.limited] end as roll,
        raw.latency as raw_latency, roll.latency as roll_latency, roll.hist_sum
      from raw full join roll on raw.key_id = roll.key_id and raw.period = roll.period`.execute(db);
    for (const r of rows) {
      const same =
        r.raw !== null &&
        r.roll !== null &&
        r.raw.every((v, i) => v === r.roll?.[i]) &&
        close(r.raw_latency ?? 0, r.roll_latency ?? 0) &&
        r.hist_sum === r.raw[0];
      if (!same) out.push(`${table} ${JSON.stringify(r)}`);
    }
  }

  const routes = await sql<{
    key_id: string;
    day: string;
    method: string;
    route: string;
    raw: number[] | null;
    roll: number[] | null;
    raw_latency: number | null;
    roll_latency: number | null;
  }>`
    with raw as (
      select key_id, (occurred_at at time zone 'UTC')::date as day, method, route,
        count(*)::int as requests, count(*) filter (where status >= 400)::int as errors,
        sum(latency_ms::float8) as latency
      from api_key_usage_events where org_id = ${orgId} and outcome = 'success'
      group by 1, 2, 3, 4),
    roll as (
      select key_id, day, method, route, requests::int, errors::int, latency_sum_ms as latency
      from api_key_usage_routes_daily where org_id = ${orgId})
    select coalesce(raw.key_id, roll.key_id) as key_id, coalesce(raw.day, roll.day)::text as day,
      coalesce(raw.method, roll.method) as method, coalesce(raw.route, roll.route) as route,
      case when raw.key_id is null then null else array[raw.requests, raw.errors] end as raw,
      case when roll.key_id is null then null else array[roll.requests, roll.errors] end as roll,
      raw.latency as raw_latency, roll.latency as roll_latency
    from raw full join roll using (key_id, day, method, route)`.execute(db);
  for (const r of routes.rows) {
    const same =
      r.raw !== null &&
      r.roll !== null &&
      r.raw.every((v, i) => v === r.roll?.[i]) &&
      close(r.raw_latency ?? 0, r.roll_latency ?? 0);
    if (!same) out.push(`api_key_usage_routes_daily ${JSON.stringify(r)}`);
  }
  return out;
}
