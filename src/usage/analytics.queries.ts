import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { DB } from '../../db/schema.ts';

type Db = Kysely<DB>;

export const ORG_USAGE_SORTS = ['last_used_at', 'request_count', 'name', 'created_at'] as const;
export type OrgUsageSort = (typeof ORG_USAGE_SORTS)[number];

export type OrgUsageParams = {
  orgId: string;
  now: Date;
  dormantBefore: Date;
  spikeFactor: number;
  spikeMin: number;
};

export type KeyUsageRow = {
  key_id: string;
  name: string;
  prefix: string;
  environment: string;
  status: 'active' | 'expired' | 'revoked';
  created_at: Date;
  last_used_at: Date | null;
  last_used_ip: string | null;
  request_count: number;
  errors_4xx: number;
  errors_5xx: number;
  denied_count: number;
  last_denied_at: Date | null;
  limited_count: number;
  last_limited_at: Date | null;
  requests_24h: number;
  dormant: boolean;
  spike: boolean;
};

const HOUR_MS = 3_600_000;
const isoDay = (d: Date): string => d.toISOString().slice(0, 10);

/**
 * Every key of the org, narrow: the columns the summary, the filters and the sorts need, from
 * api_keys and api_key_usage_totals (both by org index). Materialized once and scanned by the
 * summary and the page; the rest (host(ip), prefix, error counts, hourly windows) is read for the
 * page's keys only. Its cost grows with the org's keys, never with events or other orgs.
 */
function orgKeys(p: OrgUsageParams): RawBuilder<unknown> {
  return sql`
    with f as materialized (
      select k.id as key_id, k.name, k.created_at, t.last_used_at,
        coalesce(t.request_count, 0)::int8 as request_count,
        case when k.revoked_at is not null then 'revoked'
             when k.expires_at <= ${p.now} then 'expired' else 'active' end as status,
        (k.revoked_at is null and (k.expires_at is null or k.expires_at > ${p.now})
          and coalesce(t.last_used_at, k.created_at) < ${p.dormantBefore}) as dormant
      from api_keys k
      left join api_key_usage_totals t on t.key_id = k.id and t.org_id = ${p.orgId}
      where k.org_id = ${p.orgId}
    )`;
}

/** SPEC §5.1's spike windows: the current hour and the 23 before it, and the 7 days before. */
export function spikeWindows(now: Date): { since24h: Date; since8d: Date } {
  const currentHour = now.getTime() - (now.getTime() % HOUR_MS);
  const since24h = new Date(currentHour - 23 * HOUR_MS);
  return { since24h, since8d: new Date(since24h.getTime() - 7 * 24 * HOUR_MS) };
}

const DAY_MS = 24 * HOUR_MS;

/**
 * SPEC §5.1's spike rule's two sums for the key `keyId` names, as two lateral joins: `sw.last24`
 * (requests in the last 24 hours) and `sb.prior7d` (the 7 × 24 hours before them; null when
 * last24 is under `minRequests`, where the rule is false whatever the baseline). The baseline's
 * whole UTC days come from the daily rollup and only its ragged ends from the hourly one: a
 * busy key reads ~50 rollup rows instead of 192, each on its own heap page. Both rollups are
 * written from the same events in the same transaction, so the sums are the same (tested at
 * every hour of the day). The org usage page, the findings and the key watch share it.
 */
export function spikeLateral(
  orgId: RawBuilder<unknown>,
  keyId: RawBuilder<unknown>,
  now: Date,
  minRequests: number,
): RawBuilder<unknown> {
  const { since24h, since8d } = spikeWindows(now);
  // The baseline's whole days are [firstDay, lastDay); hours before firstDay and from lastDay on
  // are read hourly (from lastDay on also holds the last 24 hours).
  const firstDay = new Date(Math.ceil(since8d.getTime() / DAY_MS) * DAY_MS);
  const lastDay = new Date(Math.floor(since24h.getTime() / DAY_MS) * DAY_MS);
  return sql`
    cross join lateral (
      select coalesce(sum(h.requests) filter (where h.hour >= ${since24h}), 0)::int8 as last24,
        coalesce(sum(h.requests) filter (where h.hour < ${since24h}), 0)::int8 as late
      from api_key_usage_hourly h
      where h.org_id = ${orgId} and h.key_id = ${keyId} and h.hour >= ${lastDay}
    ) sw
    left join lateral (
      select (sw.late
        + (select coalesce(sum(h.requests), 0) from api_key_usage_hourly h
           where h.org_id = ${orgId} and h.key_id = ${keyId}
             and h.hour >= ${since8d} and h.hour < ${firstDay})
        + (select coalesce(sum(d.requests), 0) from api_key_usage_daily d
           where d.org_id = ${orgId} and d.key_id = ${keyId} and d.day >= ${isoDay(firstDay)}::date
             and d.day < ${isoDay(lastDay)}::date))::int8 as prior7d
      where sw.last24 >= ${minRequests}
    ) sb on true`;
}

/** The rule itself over spikeLateral's sums. */
export function isSpike(factor: number, minRequests: number): RawBuilder<boolean> {
  return sql<boolean>`(sw.last24 >= ${minRequests}
    and sw.last24 >= ${factor}::float8 * coalesce(sb.prior7d, 0) / 7.0)`;
}

export type OrgSummaryRow = {
  total_keys: number;
  active_keys: number;
  dormant_keys: number;
  never_used_keys: number;
  total_requests: number;
  most_used: { key_id: string; name: string; request_count: number } | null;
  least_used: { key_id: string; name: string; request_count: number } | null;
};

export type OrgUsagePage = {
  sort: OrgUsageSort;
  order: 'asc' | 'desc';
  status: 'active' | 'expired' | 'revoked' | undefined;
  dormant: boolean | undefined;
  limit: number;
  after: { value: string | number | null; keyId: string } | undefined;
};

/**
 * Keyset pagination over a sort column that may be null (last_used_at): nulls always come last,
 * whatever the direction, and key_id breaks ties in the sort's direction.
 */
function keysetAfter(page: OrgUsagePage): RawBuilder<boolean> {
  if (!page.after) return sql<boolean>`true`;
  const col = sql.ref(page.sort);
  const cmp = page.order === 'desc' ? sql.raw('<') : sql.raw('>');
  const { value, keyId } = page.after;
  const cast =
    page.sort === 'request_count'
      ? sql`::int8`
      : page.sort === 'name'
        ? sql`::text`
        : sql`::timestamptz`;
  if (value === null) return sql<boolean>`(${col} is null and key_id ${cmp} ${keyId}::uuid)`;
  return sql<boolean>`(${col} ${cmp} ${value}${cast} or (${col} = ${value}${cast} and key_id ${cmp} ${keyId}::uuid) or ${col} is null)`;
}

/**
 * The summary of the whole org and one page of keys in one statement: the summary and the sort
 * read one narrow row per key (keys + totals); only the page's keys read the rest of their
 * columns and their hourly rollup.
 */
export async function orgUsage(
  db: Db,
  p: OrgUsageParams,
  page: OrgUsagePage,
): Promise<{ summary: OrgSummaryRow; rows: KeyUsageRow[] }> {
  const dir = sql.raw(page.order === 'desc' ? 'desc' : 'asc');
  const sort = sql.ref(`page.${page.sort}`);
  // The summary's parts are separate CTEs over f: as scalar subqueries inside the aggregate's
  // select list the same statement measured 2–3× slower at 10k keys.
  const { rows } = await sql<KeyUsageRow & { summary: OrgSummaryRow }>`${orgKeys(p)},
    counts as (
      select count(*) as total_keys,
        count(*) filter (where status = 'active') as active_keys,
        count(*) filter (where dormant) as dormant_keys,
        count(*) filter (where status = 'active' and last_used_at is null) as never_used_keys,
        coalesce(sum(request_count), 0) as total_requests
      from f
    ), most as (
      select key_id, name, request_count from f where request_count > 0
      order by request_count desc, name, key_id limit 1
    ), least as (
      select key_id, name, request_count from f where status = 'active'
      order by request_count, name, key_id limit 1
    ), s as (
      select json_build_object(
        'total_keys', c.total_keys, 'active_keys', c.active_keys, 'dormant_keys', c.dormant_keys,
        'never_used_keys', c.never_used_keys, 'total_requests', c.total_requests,
        'most_used', (select row_to_json(most) from most),
        'least_used', (select row_to_json(least) from least)
      ) as summary
      from counts c
    )
    select page.*, s.summary
    from s left join lateral (
      select p.key_id, p.name, k.prefix, k.environment, p.status, p.created_at, p.last_used_at,
        host(t.last_used_ip) as last_used_ip, p.request_count,
        coalesce(t.errors_4xx, 0)::int8 as errors_4xx, coalesce(t.errors_5xx, 0)::int8 as errors_5xx,
        coalesce(t.denied_count, 0)::int8 as denied_count, t.last_denied_at,
        coalesce(t.limited_count, 0)::int8 as limited_count, t.last_limited_at, p.dormant,
        sw.last24 as requests_24h, ${isSpike(p.spikeFactor, p.spikeMin)} as spike
      from (
        select key_id, name, status, created_at, last_used_at, request_count, dormant
        from f
        where ${page.status ? sql`status = ${page.status}` : sql`true`}
          and ${page.dormant === undefined ? sql`true` : sql`dormant = ${page.dormant}`}
          and ${keysetAfter(page)}
        order by ${sql.ref(page.sort)} ${dir} nulls last, key_id ${dir}
        limit ${page.limit + 1}
      ) p
      join api_keys k on k.org_id = ${p.orgId} and k.id = p.key_id
      left join api_key_usage_totals t on t.org_id = ${p.orgId} and t.key_id = p.key_id
      ${spikeLateral(sql`${p.orgId}::uuid`, sql.ref('p.key_id'), p.now, p.spikeMin)}
    ) page on true
    order by ${sort} ${dir} nulls last, page.key_id ${dir}`.execute(db);
  const summary = rows[0]?.summary;
  if (!summary) throw new Error('org usage query returned no row');
  return {
    summary,
    rows: rows.filter((r) => r.key_id !== null).map(({ summary: _s, ...row }) => row),
  };
}

export type PeriodUsage = {
  start: Date;
  requests: number;
  errors_4xx: number;
  errors_5xx: number;
  denied: number;
  limited: number;
  latency_sum_ms: number;
  latency_hist: number[];
};

/** One key's hourly or daily rollup rows in [from, to). */
export async function keyPeriods(
  db: Db,
  orgId: string,
  keyId: string,
  granularity: 'hour' | 'day',
  from: Date,
  to: Date,
): Promise<PeriodUsage[]> {
  const query =
    granularity === 'hour'
      ? sql<PeriodUsage>`select hour as start, requests, errors_4xx, errors_5xx, denied, limited,
          latency_sum_ms, latency_hist from api_key_usage_hourly
          where org_id = ${orgId} and key_id = ${keyId} and hour >= ${from} and hour < ${to}
          order by hour`
      : sql<PeriodUsage>`select day::timestamptz as start, requests, errors_4xx, errors_5xx, denied,
          limited, latency_sum_ms, latency_hist from api_key_usage_daily
          where org_id = ${orgId} and key_id = ${keyId}
            and day >= ${isoDay(from)}::date and day < ${isoDay(to)}::date
          order by day`;
  const { rows } = await query.execute(db);
  return rows.map((r) => ({ ...r, latency_hist: r.latency_hist.map(Number) }));
}

/** Requests today and this month (UTC), from the daily rollup. */
export async function todayAndMonth(
  db: Db,
  orgId: string,
  keyId: string,
  now: Date,
): Promise<{ today: number; month: number }> {
  const today = now.toISOString().slice(0, 10);
  const monthStart = `${today.slice(0, 7)}-01`;
  const { rows } = await sql<{ today: number; month: number }>`
    select coalesce(sum(requests) filter (where day = ${today}::date), 0)::int8 as today,
           coalesce(sum(requests), 0)::int8 as month
    from api_key_usage_daily
    where org_id = ${orgId} and key_id = ${keyId} and day >= ${monthStart}::date`.execute(db);
  return rows[0] ?? { today: 0, month: 0 };
}

export type EndpointUsage = {
  method: string;
  route: string;
  requests: number;
  errors: number;
  avg_latency_ms: number | null;
};

export async function topEndpoints(
  db: Db,
  orgId: string,
  keyId: string,
  from: Date,
  to: Date,
): Promise<EndpointUsage[]> {
  const { rows } = await sql<EndpointUsage>`
    select method, route, sum(requests)::int8 as requests, sum(errors)::int8 as errors,
      round((sum(latency_sum_ms) / nullif(sum(requests), 0))::numeric, 3)::float8 as avg_latency_ms
    from api_key_usage_routes_daily
    where org_id = ${orgId} and key_id = ${keyId}
      and day >= ${isoDay(from)}::date and day < ${isoDay(to)}::date
    group by method, route
    order by sum(requests) desc, method, route
    limit 10`.execute(db);
  return rows;
}

/**
 * When usage is complete up to: the earliest of, over the usage jobs not ingested yet (waiting,
 * retrying, or active: a job a worker holds, or held when it was killed, until its heartbeat
 * expires), the job's creation and its batch's earliest event (`since`), else null (nothing
 * pending). The state list (not `state <= 'active'`) lets pg-boss's partial index on
 * (name, state) serve it: a range made Postgres scan every completed job kept for a week.
 */
export async function oldestPendingUsageJob(db: Db): Promise<Date | null> {
  const { rows } = await sql<{ at: Date | null }>`
    select min(least(created_on, coalesce(to_timestamp((data->>'since')::float8 / 1000), created_on))) as at
    from pgboss.job where name = 'usage.ingest' and state in ('created', 'retry', 'active')`.execute(
    db,
  );
  return rows[0]?.at ?? null;
}

export type KeyTotals = {
  request_count: number;
  errors_4xx: number;
  errors_5xx: number;
  denied_count: number;
  limited_count: number;
  first_used_at: Date | null;
  last_used_at: Date | null;
  last_used_ip: string | null;
  last_denied_at: Date | null;
  last_limited_at: Date | null;
};

export async function keyTotals(db: Db, orgId: string, keyId: string): Promise<KeyTotals> {
  const row = await db
    .selectFrom('api_key_usage_totals')
    .select([
      'request_count',
      'errors_4xx',
      'errors_5xx',
      'denied_count',
      'limited_count',
      'first_used_at',
      'last_used_at',
      sql<string | null>`host(last_used_ip)`.as('last_used_ip'),
      'last_denied_at',
      'last_limited_at',
    ])
    .where('org_id', '=', orgId)
    .where('key_id', '=', keyId)
    .executeTakeFirst();
  return (
    row ?? {
      request_count: 0,
      errors_4xx: 0,
      errors_5xx: 0,
      denied_count: 0,
      limited_count: 0,
      first_used_at: null,
      last_used_at: null,
      last_used_ip: null,
      last_denied_at: null,
      last_limited_at: null,
    }
  );
}

/**
 * A key's authenticated requests at or after `since` (a rotation): the raw events of the partial
 * hour `since` falls in, the hourly rollup up to the next UTC midnight, then the daily rollup
 * (kept KEYTRAIL_ROLLUP_RETENTION_DAYS, 400 by default). Exact while the raw events of that first
 * hour are kept (KEYTRAIL_RETENTION_DAYS) and the hourly rollup of its first day.
 */
export async function requestsSince(
  db: Db,
  orgId: string,
  keyId: string,
  since: Date,
): Promise<number> {
  const nextHour = new Date(Math.ceil(since.getTime() / 3_600_000) * 3_600_000);
  const nextDay = new Date(Math.ceil(nextHour.getTime() / 86_400_000) * 86_400_000);
  const { rows } = await sql<{ requests: number }>`
    select (
      (select count(*) from api_key_usage_events
        where org_id = ${orgId} and key_id = ${keyId}
          and occurred_at >= ${since} and occurred_at < ${nextHour}
          and outcome = 'success')
      + (select coalesce(sum(requests), 0) from api_key_usage_hourly
        where org_id = ${orgId} and key_id = ${keyId} and hour >= ${nextHour} and hour < ${nextDay})
      + (select coalesce(sum(requests), 0) from api_key_usage_daily
        where org_id = ${orgId} and key_id = ${keyId} and day >= ${isoDay(nextDay)}::date)
    )::int8 as requests`.execute(db);
  return Number(rows[0]?.requests ?? 0);
}
