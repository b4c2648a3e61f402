/**
 * The statements of `partitions compress` (usage.compress.ts): a closed month's partition is
 * rebuilt as a Citus `columnar` table beside it and swapped in. Names come from the catalog's
 * partition names (never from input); bounds from the catalog's own rendering of them.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { DB } from '../../db/schema.ts';
import { PARENT } from './usage.queries.ts';

type Db = Kysely<DB>;

/** Whether this database has Citus's `columnar` table access method. */
export async function columnarAvailable(db: Db): Promise<boolean> {
  const { rows } = await sql<{ ok: boolean }>`
    select exists (select 1 from pg_am where amname = 'columnar') as ok`.execute(db);
  return rows[0]?.ok ?? false;
}

/** On Citus: whether the events table is distributed (else its copies stay local too). */
export async function eventsDistributed(db: Db): Promise<boolean> {
  const { rows } = await sql<{ ok: boolean }>`select exists (select 1 from pg_dist_partition
    where logicalrelid = ${PARENT}::regclass) as ok`.execute(db);
  return rows[0]?.ok ?? false;
}

/** The partitions of the events table kept in columnar storage. */
export function columnarPartitions(): RawBuilder<{ name: string }> {
  return sql<{ name: string }>`select c.relname as name
    from pg_inherits i join pg_class c on c.oid = i.inhrelid join pg_am a on a.oid = c.relam
    where i.inhparent = ${PARENT}::regclass and a.amname = 'columnar'`;
}

/** The rebuilt table and the names it takes: `<partition>_c` until it is swapped in. */
export function rebuildNames(partition: string) {
  return {
    table: `${partition}_c`,
    pkey: `${partition}_c_pkey`,
    keyIndex: `${partition}_c_key_idx`,
    range: `${partition}_c_range`,
    /** On the row partition while it is copied: no new row may land in it. */
    closed: `${partition}_closed`,
  };
}

/** The partition's bound as the catalog renders it: FOR VALUES FROM ('…') TO ('…'). */
export async function partitionBound(db: Db, partition: string): Promise<string | null> {
  const { rows } = await sql<{ bound: string }>`
    select pg_get_expr(c.relpartbound, c.oid) as bound from pg_class c
    where c.oid = to_regclass(${partition})`.execute(db);
  return rows[0]?.bound ?? null;
}

/**
 * Closes the row partition to new rows (a replay of its month fails and is retried once the
 * columnar table is in place): a NOT VALID check of false binds new rows only. It takes a short
 * lock on the partition, never on the events table.
 */
export async function closePartition(
  db: Db,
  partition: string,
  lockTimeoutMs?: number,
): Promise<void> {
  const { closed } = rebuildNames(partition);
  if (await isClosed(db, partition)) return;
  // Adding a check takes the partition exclusively: a long read of the month (an export) makes
  // it wait, and every other statement on the month queue behind it; so the wait is bounded.
  await withLockTimeout(db, lockTimeoutMs, (trx) =>
    sql`alter table ${sql.table(partition)}
      add constraint ${sql.id(closed)} check (false) not valid`.execute(trx),
  );
}

/** Opens it again (a compress that could not swap gives up on it). */
export async function reopenPartition(
  db: Db,
  partition: string,
  lockTimeoutMs?: number,
): Promise<void> {
  if (!(await isClosed(db, partition))) return;
  await withLockTimeout(db, lockTimeoutMs, (trx) =>
    sql`alter table if exists ${sql.table(partition)}
      drop constraint if exists ${sql.id(rebuildNames(partition).closed)}`.execute(trx),
  );
}

async function isClosed(db: Db, partition: string): Promise<boolean> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_constraint
    where conrelid = to_regclass(${partition}) and conname = ${rebuildNames(partition).closed}`.execute(
    db,
  );
  return (rows[0]?.n ?? 0) > 0;
}

/**
 * One transaction whose lock waits end after `lockTimeoutMs` (unset: no bound), on Citus's
 * workers too: a SET LOCAL reaches the shards' own lock waits only when Citus propagates it (on
 * PostgreSQL the `citus.` setting is an unused placeholder).
 */
async function withLockTimeout<T>(
  db: Db,
  lockTimeoutMs: number | undefined,
  fn: (trx: Db) => Promise<T>,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    if (lockTimeoutMs !== undefined) {
      await sql`set local citus.propagate_set_commands = 'local'`.execute(trx);
      await sql`set local lock_timeout = ${sql.lit(`${Math.max(1, Math.round(lockTimeoutMs))}ms`)}`.execute(
        trx,
      );
    }
    return fn(trx);
  });
}

export async function dropRebuild(db: Db, partition: string): Promise<void> {
  await sql`drop table if exists ${sql.table(rebuildNames(partition).table)}`.execute(db);
}

/** The events table's columns, from the catalog: a copy carries every one, by name. */
async function eventColumns(db: Db) {
  const { rows } = await sql<{ list: string }>`select string_agg(quote_ident(attname), ', '
    order by attnum) as list from pg_attribute
    where attrelid = ${PARENT}::regclass and attnum > 0 and not attisdropped`.execute(db);
  return sql.raw(rows[0]?.list ?? '*');
}

/**
 * A statement over every shard of two co-located tables, in one transaction that may use several
 * connections per node (keytrail's connections run sequentially by default, for transactions
 * that also write coordinator tables; these write none). On PostgreSQL the setting is unused.
 */
async function acrossShards<T>(db: Db, fn: (trx: Db) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`set local citus.multi_shard_modify_mode = 'parallel'`.execute(trx);
    return fn(trx);
  });
}

/**
 * The columnar copy of a closed partition, built beside it while the month stays open: the
 * events' columns, a check of the month's range (so attaching it needs no scan), distributed
 * like the events on Citus, every row in primary-key order, then the primary key and the key
 * index (attaching builds any other index the events table has). Nothing here locks the events
 * table or the month.
 */
export async function buildColumnarCopy(
  db: Db,
  partition: string,
  range: { from: Date; to: Date },
  citus: boolean,
): Promise<void> {
  const n = rebuildNames(partition);
  const t = sql.table(n.table);
  await sql`create table ${t} (like ${sql.table(PARENT)}) using columnar`.execute(db);
  await sql`alter table ${t} add constraint ${sql.id(n.range)} check (occurred_at is not null
    and occurred_at >= ${sql.lit(range.from.toISOString())}::timestamptz
    and occurred_at < ${sql.lit(range.to.toISOString())}::timestamptz)`.execute(db);
  if (citus) {
    await sql`select create_distributed_table(${n.table}, 'org_id',
      colocate_with => ${PARENT})`.execute(db);
  }
  // In primary-key order: an org's page of raw events (an index range) then reads a few chunk
  // groups, not one per row (make bench-citus: a page's p95 fell from 354 ms to 12 ms).
  const columns = await eventColumns(db);
  await acrossShards(db, (trx) =>
    sql`insert into ${t} (${columns}) select ${columns} from ${sql.table(partition)}
      order by org_id, occurred_at, event_id`.execute(trx),
  );
  await sql`alter table ${t} add constraint ${sql.id(n.pkey)}
    primary key (org_id, occurred_at, event_id)`.execute(db);
  await sql`create index ${sql.id(n.keyIndex)} on ${t} (key_id, occurred_at)`.execute(db);
}

/**
 * Once the month is closed: the rows stored since the copy began (replays of old jobs), found
 * by the copy's primary key. The month is closed only for this and the swap.
 */
export async function copyLateRows(db: Db, partition: string): Promise<number> {
  const t = sql.table(rebuildNames(partition).table);
  const columns = await eventColumns(db);
  const result = await acrossShards(db, (trx) =>
    sql`insert into ${t} (${columns})
      select ${columns} from ${sql.table(partition)} o
      where not exists (select 1 from ${t} c where c.org_id = o.org_id
        and c.occurred_at = o.occurred_at and c.event_id = o.event_id)`.execute(trx),
  );
  return Number(result.numAffectedRows ?? 0);
}

/**
 * Swaps the columnar copy in, in one transaction: the row partition detached and dropped, the
 * copy attached under its name. Only this waits on the events table (a plain DETACH takes it
 * exclusively): `lockTimeoutMs` bounds the wait, so ingest is never held behind it for long.
 */
export async function swapIn(
  db: Db,
  partition: string,
  bound: string,
  lockTimeoutMs: number,
): Promise<void> {
  const n = rebuildNames(partition);
  await withLockTimeout(db, lockTimeoutMs, async (trx) => {
    await sql`alter table ${sql.table(PARENT)} detach partition ${sql.table(partition)}`.execute(
      trx,
    );
    await sql`alter table ${sql.table(PARENT)} attach partition ${sql.table(n.table)}
      ${sql.raw(bound)}`.execute(trx);
    await sql`drop table ${sql.table(partition)}`.execute(trx);
    await sql`alter table ${sql.table(n.table)} rename to ${sql.id(partition)}`.execute(trx);
    await sql`alter index ${sql.id(n.pkey)} rename to ${sql.id(`${partition}_pkey`)}`.execute(trx);
    await sql`alter index ${sql.id(n.keyIndex)}
      rename to ${sql.id(`${partition}_key_id_occurred_at_idx`)}`.execute(trx);
    await sql`alter table ${sql.table(partition)} drop constraint ${sql.id(n.range)}`.execute(trx);
  });
}
