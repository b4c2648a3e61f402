import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { DB } from '../../db/schema.ts';
import { onCitus } from '../platform/db.ts';
import type { PeriodRow, RouteRow, TotalsRow } from './usage.aggregate.ts';
import type { Batch } from './usage.batch.ts';
import { OUTCOMES, type UsageEvent } from './usage.types.ts';

type Db = Kysely<DB>;

export const PARENT = 'api_key_usage_events';
export const partitionName = (year: number, month: number): string =>
  `${PARENT}_${year}_${String(month).padStart(2, '0')}`;

/** Key of keytrail's advisory lock on partition creation (the two-key form: namespace, lock). */
const PARTITION_LOCK = [0x6b74_7001, 1] as const;

/**
 * Serialises the creators of partitions until the transaction ends: take it once, before any
 * partition DDL (one lock, not one per month: two transactions each holding one month's lock
 * while their DDL waits for the other's lock on the parent table would deadlock). IF NOT EXISTS
 * alone is not enough: two transactions that both find a table missing both create it, and the
 * second fails with "relation already exists" once the first commits. Behind this lock the
 * second sees the committed table and does nothing.
 */
export function partitionCreationLock(): RawBuilder<unknown> {
  return sql`select pg_advisory_xact_lock(${PARTITION_LOCK[0]}::int4, ${PARTITION_LOCK[1]}::int4)`;
}

/** Records that raw events before `before` are gone (the watermark only moves forward). */
export async function raisePruneWatermark(db: Db, before: Date): Promise<void> {
  await sql`insert into usage_prune_watermark (pruned_before) values (${before})
    on conflict (id) do update
    set pruned_before = greatest(usage_prune_watermark.pruned_before, excluded.pruned_before)`.execute(
    db,
  );
}

/** Where prune has dropped raw events up to (no row before the first drop). */
export function pruneWatermark(): RawBuilder<{ pruned_before: Date }> {
  return sql<{ pruned_before: Date }>`select pruned_before from usage_prune_watermark`;
}

/** Which of these partitions of the events table exist (a catalog read: no table lock). */
export function existingPartitions(names: string[]): RawBuilder<{ name: string }> {
  return sql<{ name: string }>`select c.relname as name
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = ${PARENT}::regclass and c.relname = any(${names}::text[])`;
}

/**
 * Creates the monthly partition holding `monthStart` if missing. Names come from integers, never
 * from input; the creation lock makes concurrent creators (two workers, start-up and schedule,
 * an ingest meeting a new month) safe.
 */
export async function createMonthPartition(db: Db, year: number, month: number): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await partitionCreationLock().execute(trx);
    await monthPartitionDdl(year, month).execute(trx);
  });
}

export function monthPartitionDdl(year: number, month: number): RawBuilder<unknown> {
  const from = `${year}-${String(month).padStart(2, '0')}-01`;
  const next =
    month === 12 ? `${year + 1}-01-01` : `${year}-${String(month + 1).padStart(2, '0')}-01`;
  return sql`create table if not exists ${sql.table(partitionName(year, month))}
    partition of ${sql.table(PARENT)} for values from (${sql.lit(from)}) to (${sql.lit(next)})`;
}

/**
 * Existing partitions of the events table with their bounds, oldest first. `detachPending`: a
 * `DETACH … CONCURRENTLY` was interrupted between its two transactions; the partition is still
 * listed and must be finished with `DETACH … FINALIZE`.
 */
export async function listPartitions(
  db: Db,
): Promise<{ name: string; bounds: string; detachPending: boolean }[]> {
  const { rows } = await sql<{ name: string; bounds: string; detachPending: boolean }>`
    select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bounds,
      i.inhdetachpending as "detachPending"
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = ${PARENT}::regclass
    order by c.relname`.execute(db);
  return rows;
}

export type PartitionStats = {
  name: string;
  /** The range [from, to) of its bound; null when the bound is not a simple range. */
  from: Date | null;
  to: Date | null;
  detachPending: boolean;
  /** pg_class.reltuples: an estimate as of the last VACUUM/ANALYZE; null before the first one. */
  approxRows: number | null;
  /** Table, indexes and TOAST. */
  bytes: number;
  /** `row` (PostgreSQL's heap) or `columnar` (Citus's, `partitions compress`). */
  storage: string;
  /** Closed to new rows by a compress in progress, or left so by one that stopped half-way. */
  closed: boolean;
};

// pg_get_expr renders a range bound as FOR VALUES FROM ('2026-01-01 00:00:00+00') TO (...).
const RANGE_BOUND_RE = "FROM \\('([^']+)'\\) TO \\('([^']+)'\\)";

/**
 * Each partition with its range and size, from the catalog only: reltuples instead of count(*),
 * so listing costs nothing however many rows a month holds.
 */
export async function partitionStats(db: Db): Promise<PartitionStats[]> {
  // On Citus the rows are in the workers' shards of each partition: their catalogs are summed.
  const citus = await onCitus(db);
  const approxRows = citus
    ? sql`(select case when bool_and(r.result::float8 < 0) then null
          else sum(greatest(r.result::float8, 0)) end
        from run_command_on_shards(c.oid,
          'select reltuples from pg_class where oid = ''%s''::regclass') r
        where r.success)`
    : sql`case when c.reltuples < 0 then null else c.reltuples::float8 end`;
  const bytes = citus ? sql`citus_total_relation_size(c.oid)` : sql`pg_total_relation_size(c.oid)`;
  const { rows } = await sql<PartitionStats>`
    select c.relname as name, b.m[1]::timestamptz as "from", b.m[2]::timestamptz as "to",
      i.inhdetachpending as "detachPending", ${approxRows} as "approxRows", ${bytes} as bytes,
      case a.amname when 'heap' then 'row' else a.amname end as storage,
      exists (select 1 from pg_constraint k where k.conrelid = c.oid
        and k.conname = c.relname || '_closed') as closed
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    join pg_am a on a.oid = c.relam
    cross join lateral (
      select regexp_match(pg_get_expr(c.relpartbound, c.oid), ${RANGE_BOUND_RE}) as m
    ) b
    where i.inhparent = ${PARENT}::regclass
    order by c.relname`.execute(db);
  return rows;
}

/**
 * Month tables of the events (api_key_usage_events_YYYY_MM, then `suffix`) that are no partition
 * (any more): a prune that detached one and then failed before its DROP left it behind; with
 * `_c`, a compress's copy left by a run that stopped half-way.
 */
export async function listDetachedMonthTables(db: Db, suffix: '' | '_c' = ''): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name from pg_class c
    where c.relkind = 'r' and not c.relispartition
      and c.relnamespace = (select relnamespace from pg_class where oid = ${PARENT}::regclass)
      and c.relname ~ ${`^${PARENT}_[0-9]{4}_[0-9]{2}${suffix}$`}
    order by c.relname`.execute(db);
  return rows.map((r) => r.name);
}

/** Session advisory lock key of prune ("ktprune"): one prune at a time across all processes. */
export const PRUNE_LOCK = 0x6b7470_72756e65n;

/**
 * `fn` on one pinned connection that holds the maintenance lock (prune's) until it returns: one
 * prune or compress at a time across all processes. Null when another holds the lock.
 */
export async function withPruneLock<T>(db: Db, fn: (conn: Db) => Promise<T>): Promise<T | null> {
  return db.connection().execute(async (conn) => {
    const { rows } = await sql<{ locked: boolean }>`
      select pg_try_advisory_lock(${PRUNE_LOCK.toString()}::int8) as locked`.execute(conn);
    if (rows[0]?.locked !== true) return null;
    try {
      return await fn(conn);
    } finally {
      await sql`select pg_advisory_unlock(${PRUNE_LOCK.toString()}::int8)`.execute(conn);
    }
  });
}

export async function dropTable(db: Db, name: string): Promise<number> {
  const started = performance.now();
  await sql`drop table ${sql.table(name)}`.execute(db);
  return (performance.now() - started) / 1000;
}

/** COPY of events into the partitioned parent (PostgreSQL routes each row to its month). */
export const COPY_EVENTS = `copy ${PARENT}
  (event_id, org_id, key_id, occurred_at, method, route, status, latency_ms, ip, user_agent, outcome)
  from stdin`;

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_ESCAPES: Record<string, string> = {
  '\\': '\\\\',
  '\t': '\\t',
  '\n': '\\n',
  '\r': '\\r',
};
/** A text-format COPY field: backslash, tab and line breaks escaped, null as \N. */
const field = (v: string | null): string =>
  v === null
    ? '\\N'
    : COPY_SPECIAL.test(v)
      ? v.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c] ?? c)
      : v;

const MILLIS = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

/**
 * ISO 8601 times of epoch milliseconds, `Date` formatting done once per second of a batch (its
 * events are mostly in time order): a `toISOString()` per event was the COPY text's largest cost.
 */
export function isoTimes(): (ms: number) => string {
  let second = Number.NaN;
  let prefix = '';
  return (time) => {
    const ms = Math.trunc(time); // as Date does with a fraction of a millisecond
    const s = Math.floor(ms / 1000);
    if (s !== second) {
      second = s;
      prefix = new Date(s * 1000).toISOString().slice(0, -4); // without "mmmZ"
    }
    return `${prefix}${MILLIS[ms - s * 1000] ?? '000'}Z`;
  };
}

// eslint-disable-next-line no-control-regex
const isAscii = (s: string): boolean => /^[\x00-\x7f]*$/.test(s);

/** Lines of COPY text per chunk: a string of many small pieces is costly to flatten at once. */
const LINES_PER_CHUNK = 256;

/**
 * The rows of COPY_EVENTS in text format, one line per event, straight from the batch's columns:
 * each dictionary entry (key and org, route, user agent) is escaped once, not once per event.
 * Ids are checked uuids and addresses checked IPs (no character to escape). Returned as buffers
 * of LINES_PER_CHUNK lines: one string of the whole batch took longer to turn into bytes (V8
 * flattens its tens of thousands of pieces) than all its lines took to format.
 */
export function encodeEventsCopy(b: Batch): Buffer[] {
  const keys = b.keys.map(([keyId, orgId]) => `\t${orgId}\t${keyId}\t`);
  const routes = b.routes.map((r) => `\t${field(r)}\t`);
  const agents = b.agents.map((a) => `\t${field(a)}\t`);
  const methods = new Map<string, string>();
  const iso = isoTimes();
  // Everything but the dictionaries and methods is ASCII by construction; when they are too, the
  // text is encoded as latin1 (the same bytes), about twice as fast as UTF-8 here.
  let encoding: BufferEncoding = [...b.routes, ...b.agents].every(isAscii) ? 'latin1' : 'utf8';
  const chunks: Buffer[] = [];
  let out = '';
  for (let i = 0; i < b.id.length; i++) {
    const m = b.m[i] ?? '';
    let method = methods.get(m);
    if (method === undefined) {
      methods.set(m, (method = field(m)));
      if (!isAscii(m)) encoding = 'utf8';
    }
    const ua = b.ua[i] ?? -1;
    out += `${b.id[i]}${keys[b.k[i] ?? 0]}${iso(b.t[i] ?? 0)}\t${method}${routes[b.r[i] ?? 0]}${b.s[i]}\t${b.l[i]}\t${b.ip[i] ?? '\\N'}${ua < 0 ? '\t\\N\t' : agents[ua]}${OUTCOMES[b.o[i] ?? 0]}\n`;
    if (i % LINES_PER_CHUNK === LINES_PER_CHUNK - 1) {
      chunks.push(Buffer.from(out, encoding));
      out = '';
    }
  }
  if (out !== '') chunks.push(Buffer.from(out, encoding));
  return chunks;
}

/**
 * Inserts events, skipping any already stored (same org, occurred_at and event_id) and waiting for
 * rows a concurrent transaction has not committed yet; returns the rows it inserted. The
 * ingester's fallback after a COPY hit a stored row. unnest keeps it one statement with 11
 * parameters at any size.
 */
export function insertEventsSkippingStored(
  events: readonly UsageEvent[],
): RawBuilder<{ org_id: string; event_id: string; occurred_at: Date }> {
  return insertEvents(events, sql`on conflict do nothing`);
}

/**
 * Inserts events as they are: for a month in columnar storage, which has no ON CONFLICT for new
 * rows (Citus: "columnar_tuple_insert_speculative not implemented"). The caller leaves out the
 * stored ones (storedEvents) and the batch's repeats; one stored meanwhile by a racing
 * transaction fails the insert on the primary key, and the job with it (retried).
 */
export function insertEventsAsGiven(
  events: readonly UsageEvent[],
): RawBuilder<{ org_id: string; event_id: string; occurred_at: Date }> {
  return insertEvents(events, sql``);
}

function insertEvents(
  events: readonly UsageEvent[],
  onConflict: RawBuilder<unknown>,
): RawBuilder<{ org_id: string; event_id: string; occurred_at: Date }> {
  const col = <T>(f: (e: UsageEvent) => T): T[] => events.map(f);
  return sql<{ org_id: string; event_id: string; occurred_at: Date }>`
    insert into api_key_usage_events
      (event_id, org_id, key_id, occurred_at, method, route, status, latency_ms, ip, user_agent, outcome)
    select * from unnest(
      ${col((e) => e.eventId)}::uuid[], ${col((e) => e.orgId)}::uuid[], ${col((e) => e.keyId)}::uuid[],
      ${col((e) => new Date(e.occurredAt))}::timestamptz[], ${col((e) => e.method)}::text[],
      ${col((e) => e.route)}::text[], ${col((e) => e.status)}::smallint[],
      ${col((e) => e.latencyMs)}::real[], ${col((e) => e.ip)}::inet[],
      ${col((e) => e.userAgent)}::text[], ${col((e) => e.outcome)}::text[])
    ${onConflict}
    returning org_id, event_id, occurred_at`;
}

/**
 * Which of these events are stored: a superset read by their orgs, ids and time span (one index
 * range per org on Citus's shards, no join with a function), narrowed by the caller.
 */
export function storedEvents(
  events: readonly UsageEvent[],
): RawBuilder<{ org_id: string; event_id: string; occurred_at: Date }> {
  let [first, last] = [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
  for (const e of events)
    [first, last] = [Math.min(first, e.occurredAt), Math.max(last, e.occurredAt)];
  return sql<{ org_id: string; event_id: string; occurred_at: Date }>`
    select org_id, event_id, occurred_at from api_key_usage_events
    where org_id = any(${[...new Set(events.map((e) => e.orgId))]}::uuid[])
      and occurred_at between ${new Date(first)} and ${new Date(last)}
      and event_id = any(${events.map((e) => e.eventId)}::uuid[])`;
}

type Element = string | number | Date | null;
/**
 * A PostgreSQL array literal of one column's values, sent as one text parameter: pg's own array
 * serialization (prepareValue and a regex escape per element) was ~5 % of the worker's CPU.
 */
export function arrayLiteral(values: readonly Element[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i] ?? null;
    if (i > 0) out += ',';
    if (v === null) out += 'NULL';
    else if (typeof v === 'number') out += String(v);
    else if (v instanceof Date) out += v.toISOString();
    else out += `"${v.includes('"') || v.includes('\\') ? v.replace(/["\\]/g, '\\$&') : v}"`;
  }
  return `${out}}`;
}

export function upsertTotals(rows: readonly TotalsRow[]): RawBuilder<unknown> {
  const col = (f: (r: TotalsRow) => Element): string => arrayLiteral(rows.map(f));
  // greatest/least ignore nulls; last_used_ip follows the latest successful event.
  return sql`
    insert into api_key_usage_totals as t
      (key_id, org_id, request_count, errors_4xx, errors_5xx, denied_count, limited_count,
       first_used_at, last_used_at, last_used_ip, last_denied_at, last_limited_at)
    select * from unnest(
      ${col((r) => r.keyId)}::uuid[], ${col((r) => r.orgId)}::uuid[], ${col((r) => r.requests)}::int8[],
      ${col((r) => r.errors4xx)}::int8[], ${col((r) => r.errors5xx)}::int8[], ${col((r) => r.denied)}::int8[],
      ${col((r) => r.limited)}::int8[],
      ${col((r) => r.firstUsedAt)}::timestamptz[], ${col((r) => r.lastUsedAt)}::timestamptz[],
      ${col((r) => r.lastUsedIp)}::inet[], ${col((r) => r.lastDeniedAt)}::timestamptz[],
      ${col((r) => r.lastLimitedAt)}::timestamptz[])
    on conflict (org_id, key_id) do update set
      request_count = t.request_count + excluded.request_count,
      errors_4xx = t.errors_4xx + excluded.errors_4xx,
      errors_5xx = t.errors_5xx + excluded.errors_5xx,
      denied_count = t.denied_count + excluded.denied_count,
      limited_count = t.limited_count + excluded.limited_count,
      first_used_at = least(t.first_used_at, excluded.first_used_at),
      last_used_ip = case
        when excluded.last_used_at is not null
          and (t.last_used_at is null or excluded.last_used_at >= t.last_used_at)
        then excluded.last_used_ip else t.last_used_ip end,
      last_used_at = greatest(t.last_used_at, excluded.last_used_at),
      last_denied_at = greatest(t.last_denied_at, excluded.last_denied_at),
      last_limited_at = greatest(t.last_limited_at, excluded.last_limited_at)`;
}

const histLiteral = (h: readonly number[]): string => `{${h.join(',')}}`;

/** Hourly and daily rollups share a shape; the histogram merges element-wise. */
export function upsertPeriods(
  table: 'api_key_usage_hourly' | 'api_key_usage_daily',
  rows: readonly PeriodRow[],
): RawBuilder<unknown> {
  const col = (f: (r: PeriodRow) => Element): string => arrayLiteral(rows.map(f));
  const period = table === 'api_key_usage_hourly' ? sql`hour` : sql`day`;
  const periodType = table === 'api_key_usage_hourly' ? sql`timestamptz[]` : sql`date[]`;
  return sql`
    insert into ${sql.table(table)} as t
      (key_id, ${period}, org_id, requests, errors_4xx, errors_5xx, denied, limited, latency_sum_ms,
       latency_hist)
    select k, p, o, n, e4, e5, d, li, ls, h::bigint[] from unnest(
      ${col((r) => r.keyId)}::uuid[], ${col((r) => r.period)}::${periodType}, ${col((r) => r.orgId)}::uuid[],
      ${col((r) => r.requests)}::int8[], ${col((r) => r.errors4xx)}::int8[], ${col((r) => r.errors5xx)}::int8[],
      ${col((r) => r.denied)}::int8[], ${col((r) => r.limited)}::int8[], ${col((r) => r.latencySumMs)}::float8[],
      ${col((r) => histLiteral(r.hist))}::text[]
    ) as u(k, p, o, n, e4, e5, d, li, ls, h)
    on conflict (org_id, key_id, ${period}) do update set
      requests = t.requests + excluded.requests,
      errors_4xx = t.errors_4xx + excluded.errors_4xx,
      errors_5xx = t.errors_5xx + excluded.errors_5xx,
      denied = t.denied + excluded.denied,
      limited = t.limited + excluded.limited,
      latency_sum_ms = t.latency_sum_ms + excluded.latency_sum_ms,
      latency_hist = (select array_agg(a + b order by i)
                      from unnest(t.latency_hist, excluded.latency_hist) with ordinality as x(a, b, i))`;
}

/** The (key, day) pairs' stored routes: what the route cap counts against. */
export function storedRoutes(
  pairs: readonly { orgId: string; keyId: string; day: string }[],
): RawBuilder<{ keyId: string; day: string; method: string; route: string }> {
  const col = (f: (p: (typeof pairs)[number]) => string): string => arrayLiteral(pairs.map(f));
  return sql<{ keyId: string; day: string; method: string; route: string }>`
    select r.key_id as "keyId", to_char(r.day, 'YYYY-MM-DD') as day, r.method, r.route
    from api_key_usage_routes_daily r
    join unnest(${col((p) => p.orgId)}::uuid[], ${col((p) => p.keyId)}::uuid[], ${col((p) => p.day)}::date[])
      as p(org_id, key_id, day) on r.org_id = p.org_id and r.key_id = p.key_id and r.day = p.day`;
}

export function upsertRoutes(rows: readonly RouteRow[]): RawBuilder<unknown> {
  const col = (f: (r: RouteRow) => Element): string => arrayLiteral(rows.map(f));
  return sql`
    insert into api_key_usage_routes_daily as t
      (key_id, day, method, route, org_id, requests, errors, latency_sum_ms)
    select * from unnest(
      ${col((r) => r.keyId)}::uuid[], ${col((r) => r.day)}::date[], ${col((r) => r.method)}::text[],
      ${col((r) => r.route)}::text[], ${col((r) => r.orgId)}::uuid[], ${col((r) => r.requests)}::int8[],
      ${col((r) => r.errors)}::int8[], ${col((r) => r.latencySumMs)}::float8[])
    on conflict (org_id, key_id, day, method, route) do update set
      requests = t.requests + excluded.requests,
      errors = t.errors + excluded.errors,
      latency_sum_ms = t.latency_sum_ms + excluded.latency_sum_ms`;
}

/** The keys of `keyIds` in the org, with when each stopped working (reported events are checked). */
export async function keysOfOrg(
  db: Db,
  orgId: string,
  keyIds: readonly string[],
): Promise<Map<string, { revokedAt: Date | null; expiresAt: Date | null }>> {
  if (keyIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('api_keys')
    .select(['id', 'revoked_at', 'expires_at'])
    .where('org_id', '=', orgId)
    .where('id', '=', sql<string>`any(${[...keyIds]}::uuid[])`)
    .execute();
  return new Map(rows.map((r) => [r.id, { revokedAt: r.revoked_at, expiresAt: r.expires_at }]));
}

/** Year and month (1–12) of a partition named api_key_usage_events_YYYY_MM. */
export function partitionMonth(name: string): { year: number; month: number } | null {
  const match = /_(\d{4})_(\d{2})$/.exec(name);
  return match ? { year: Number(match[1]), month: Number(match[2]) } : null;
}

/**
 * DETACH ... CONCURRENTLY takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so inserts
 * into other partitions go on; it cannot run inside a transaction block, hence two statements
 * on the pool. A DEFAULT partition would make it impossible (none exists by design).
 */
export async function detachAndDropPartition(
  db: Db,
  name: string,
  detachPending = false,
): Promise<{ detachSeconds: number; dropSeconds: number }> {
  const started = performance.now();
  // An interrupted concurrent detach (process killed, statement cancelled) left the partition
  // pending: FINALIZE completes it; a second CONCURRENTLY would be refused. Citus 12.1 has no
  // concurrent detach: there it is a plain one (a brief exclusive lock on the parent).
  const how = detachPending ? sql`finalize` : (await onCitus(db)) ? sql`` : sql`concurrently`;
  await sql`alter table ${sql.table(PARENT)} detach partition ${sql.table(name)} ${how}`.execute(
    db,
  );
  const detachSeconds = (performance.now() - started) / 1000;
  return { detachSeconds, dropSeconds: await dropTable(db, name) };
}

export async function deleteRollupsBefore(
  db: Db,
  p: { hourlyBefore: Date; dailyBefore: Date },
): Promise<{ hourly: number; daily: number }> {
  const hourly = await db
    .deleteFrom('api_key_usage_hourly')
    .where('hour', '<', p.hourlyBefore)
    .executeTakeFirst();
  const day = p.dailyBefore.toISOString().slice(0, 10);
  const daily = await db
    .deleteFrom('api_key_usage_daily')
    .where('day', '<', day as never)
    .executeTakeFirst();
  await db
    .deleteFrom('api_key_usage_routes_daily')
    .where('day', '<', day as never)
    .execute();
  return { hourly: Number(hourly.numDeletedRows), daily: Number(daily.numDeletedRows) };
}
