import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import { LOWER_BOUNDS_MS } from './histogram.ts';
import { OTHER_ROUTE } from './usage.aggregate.ts';
import { LIMITED_OUTCOMES } from './usage.types.ts';

type Db = Kysely<DB>;
/** The refusals by a limit, as a text[] parameter: rollups count them as `limited`. */
export const LIMITED = sql`${[...LIMITED_OUTCOMES]}::text[]`;
export type RollupTable =
  'api_key_usage_hourly' | 'api_key_usage_daily' | 'api_key_usage_routes_daily';

/**
 * Blocks ingest for the rebuild's transaction: an ingest batch committing between the read of
 * raw events and the replacement of rollups would otherwise be lost from them.
 */
export async function lockRollups(db: Db): Promise<void> {
  await sql`lock table api_key_usage_hourly, api_key_usage_daily, api_key_usage_routes_daily
    in share row exclusive mode`.execute(db);
}

/**
 * Recomputes the hourly and daily rollups of [from, to) from raw events into temp tables named
 * expected_<table>. width_bucket over the same lower bounds as histogram.ts gives the same
 * bucket as the incremental path (latencies are stored as the same float4 values).
 */
export async function computeExpected(
  db: Db,
  from: Date,
  to: Date,
  hourlyFrom: Date,
  routesPerKeyDay: number,
): Promise<void> {
  const bounds = [...LOWER_BOUNDS_MS];
  for (const [table, period, start] of [
    ['api_key_usage_hourly', sql`date_trunc('hour', occurred_at)`, hourlyFrom],
    ['api_key_usage_daily', sql`(occurred_at at time zone 'UTC')::date`, from],
  ] as const) {
    await sql`
      create temp table ${sql.table(`expected_${table}`)} on commit drop as
      with b as (
        select key_id, org_id, ${period} as p, outcome, status, latency_ms,
               width_bucket(latency_ms::float8, ${bounds}::float8[]) as bucket
        from api_key_usage_events where occurred_at >= ${start} and occurred_at < ${to}
      ), hist as (
        select d.key_id, d.p, array_agg(coalesce(x.n, 0) order by i)::bigint[] as h
        from (select distinct key_id, p from b) d
        cross join generate_series(1, ${bounds.length}) as i
        left join (select key_id, p, bucket, count(*) as n from b where outcome = 'success'
                   group by 1, 2, 3) x on x.key_id = d.key_id and x.p = d.p and x.bucket = i
        group by d.key_id, d.p
      )
      select b.key_id, b.p, min(b.org_id::text)::uuid as org_id,
        count(*) filter (where outcome = 'success') as requests,
        count(*) filter (where outcome = 'success' and status between 400 and 499) as errors_4xx,
        count(*) filter (where outcome = 'success' and status >= 500) as errors_5xx,
        count(*) filter (where outcome <> 'success' and outcome <> all(${LIMITED})) as denied,
        count(*) filter (where outcome = any(${LIMITED})) as limited,
        coalesce(sum(latency_ms::float8) filter (where outcome = 'success'), 0) as latency_sum_ms,
        hist.h as latency_hist
      from b join hist using (key_id, p)
      group by b.key_id, b.p, hist.h`.execute(db);
  }
  // The route cap as the ingest applies it: per key and day, the first `routesPerKeyDay` routes to
  // appear (by their first event) keep their rows, later ones are summed into (other).
  await sql`
    create temp table expected_api_key_usage_routes_daily on commit drop as
    with r as (
      select key_id, (occurred_at at time zone 'UTC')::date as p, method, route,
        min(org_id::text) as org_id, count(*) as requests,
        count(*) filter (where status >= 400) as errors, sum(latency_ms::float8) as latency_sum_ms,
        min(occurred_at) as first_at
      from api_key_usage_events
      where occurred_at >= ${from} and occurred_at < ${to} and outcome = 'success'
      group by 1, 2, 3, 4
    ), ranked as (
      select r.*, row_number() over (partition by key_id, p order by first_at, method, route) as n
      from r
    )
    select key_id, p, method,
      case when n <= ${routesPerKeyDay} then route else ${OTHER_ROUTE} end as route,
      min(org_id)::uuid as org_id, sum(requests)::int8 as requests, sum(errors)::int8 as errors,
      sum(latency_sum_ms) as latency_sum_ms
    from ranked
    group by 1, 2, 3, 4`.execute(db);
}

const PERIOD = {
  api_key_usage_hourly: 'hour',
  api_key_usage_daily: 'day',
  api_key_usage_routes_daily: 'day',
} as const;
const EXTRA_KEYS = {
  api_key_usage_hourly: [],
  api_key_usage_daily: [],
  api_key_usage_routes_daily: ['method', 'route'],
} as const;
const PERIOD_VALUES = [
  'requests',
  'errors_4xx',
  'errors_5xx',
  'denied',
  'limited',
  'latency_hist',
] as const;
const VALUES = {
  api_key_usage_hourly: PERIOD_VALUES,
  api_key_usage_daily: PERIOD_VALUES,
  api_key_usage_routes_daily: ['requests', 'errors'],
} as const;

function rangeOf(table: RollupTable, from: Date, to: Date) {
  const col = sql.ref(`t.${PERIOD[table]}`);
  return table === 'api_key_usage_hourly'
    ? sql`${col} >= ${from} and ${col} < ${to}`
    : sql`${col} >= ${from.toISOString().slice(0, 10)}::date and ${col} < ${to.toISOString().slice(0, 10)}::date`;
}

/** Rows of `table` in [from, to) that differ from the recomputed ones (missing either side too). */
export async function countDifferences(
  db: Db,
  table: RollupTable,
  from: Date,
  to: Date,
): Promise<number> {
  const keys = ['org_id', 'key_id', ...EXTRA_KEYS[table]];
  const join = sql.join(
    [
      sql`e.p = t.${sql.ref(PERIOD[table])}`,
      ...keys.map((k) => sql`e.${sql.ref(k)} = t.${sql.ref(k)}`),
    ],
    sql` and `,
  );
  const differs = sql.join(
    [
      ...VALUES[table].map((v) => sql`e.${sql.ref(v)} is distinct from t.${sql.ref(v)}`),
      // Sums of floats added in another order differ in the last bits only.
      sql`abs(e.latency_sum_ms - t.latency_sum_ms) > 0.001 * greatest(1, abs(t.latency_sum_ms))`,
    ],
    sql` or `,
  );
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n
    from ${sql.table(`expected_${table}`)} e
    full join (select * from ${sql.table(table)} t where ${rangeOf(table, from, to)}) t on ${join}
    where e.key_id is null or t.key_id is null or ${differs}`.execute(db);
  return rows[0]?.n ?? 0;
}

/** Replaces the rollups of [from, to) with the recomputed rows. */
export async function replaceRollups(
  db: Db,
  table: RollupTable,
  from: Date,
  to: Date,
): Promise<void> {
  await sql`delete from ${sql.table(table)} t where ${rangeOf(table, from, to)}`.execute(db);
  const period = sql.ref(PERIOD[table]);
  if (table === 'api_key_usage_routes_daily') {
    await sql`insert into api_key_usage_routes_daily
      (key_id, day, method, route, org_id, requests, errors, latency_sum_ms)
      select key_id, p, method, route, org_id, requests, errors, latency_sum_ms
      from expected_api_key_usage_routes_daily`.execute(db);
    return;
  }
  await sql`insert into ${sql.table(table)}
    (key_id, ${period}, org_id, requests, errors_4xx, errors_5xx, denied, limited, latency_sum_ms,
     latency_hist)
    select key_id, p, org_id, requests, errors_4xx, errors_5xx, denied, limited, latency_sum_ms,
      latency_hist
    from ${sql.table(`expected_${table}`)}`.execute(db);
}
