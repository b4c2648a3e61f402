import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { QuotaConfig } from './limits.types.ts';

type Db = Kysely<DB>;

/** The period a refill belongs to, on the database clock (null: no refill). */
const CURRENT_PERIOD = sql`case k.refill_interval
  when 'day' then date_trunc('day', now(), 'UTC')
  when 'month' then date_trunc('month', now(), 'UTC') end`;

export type Take = {
  subject: string;
  got: number;
  /** The pool after this take: what no instance holds. */
  pool: number;
  limit: number;
  generation: number;
  periodStart: Date | null;
  refill: 'day' | 'month' | null;
  /** The lease's sequence after this take: a report computed before it must not overwrite it. */
  seq: number;
};

/**
 * Takes credit for this instance, in one statement for many subjects: each quota row locked in
 * subject order (no deadlock between instances), refilled lazily when a new period began (the
 * old period's leases are void), then up to `want` moved from the pool to this instance's lease.
 */
export async function takeQuota(
  db: Db,
  instanceId: string,
  items: readonly { subject: string; want: number }[],
): Promise<Take[]> {
  const sorted = [...items].sort((a, b) => (a.subject < b.subject ? -1 : 1));
  const { rows } = await sql<{
    subject: string;
    got: string;
    pool: string;
    limit: string;
    generation: number;
    period_start: Date | null;
    refill: 'day' | 'month' | null;
    seq: number;
  }>`
    with u as (
      select * from unnest(${sorted.map((i) => i.subject)}::uuid[], ${sorted.map((i) => i.want)}::int8[])
        as u(subject, want)
    ), q as (
      select k.subject, k.generation, k.refill_interval, k.quota_limit, u.want,
        ${CURRENT_PERIOD} as cur, k.period_start, k.pool, k.refill_amount
      from key_quotas k join u using (subject)
      order by k.subject
      for update of k
    ), f as (
      -- A take that began before a period boundary (now() is the transaction's start) and got
      -- the lock after one that refilled must not move the period back (a second refill).
      select q.*, case when q.cur is not null and q.cur > coalesce(q.period_start, '-infinity')
          then q.refill_amount else q.pool end as avail,
        greatest(q.cur, q.period_start) as period
      from q
    ), t as (
      update key_quotas k set pool = f.avail - least(f.want, f.avail), period_start = f.period
      from f where k.subject = f.subject
      returning k.subject, k.pool, k.quota_limit, k.generation, k.period_start, k.refill_interval,
        least(f.want, f.avail) as got
    ), l as (
      insert into key_quota_leases as l (subject, instance_id, generation, period_start, held,
        seq, updated_at)
      select subject, ${instanceId}, generation, period_start, got, 1, now() from t
      on conflict (subject, instance_id) do update set
        held = case when l.generation = excluded.generation
            and l.period_start is not distinct from excluded.period_start
          then l.held + excluded.held else excluded.held end,
        seq = l.seq + 1, generation = excluded.generation, period_start = excluded.period_start,
        updated_at = now()
      returning subject, seq
    )
    select t.subject, t.got::text, t.pool::text, t.quota_limit::text as limit, t.generation,
      t.period_start, t.refill_interval as refill, l.seq
    from t join l using (subject)`.execute(db);
  return rows.map((r) => ({
    subject: r.subject,
    got: Number(r.got),
    pool: Number(r.pool),
    limit: Number(r.limit),
    generation: r.generation,
    periodStart: r.period_start,
    refill: r.refill,
    seq: r.seq,
  }));
}

/**
 * This instance's unspent credit per lease, so `held` follows spending down. Only a lease no
 * take has touched since the report was computed (`seq`) is set: a report never erases a take,
 * so `held` is never below what the instance may still spend. Returns the subjects whose lease
 * took the report.
 */
/** What an instance reports of one lease: unspent credit, as of the take `seq` of that lease. */
export type ReportItem = {
  subject: string;
  unspent: number;
  seq: number;
  generation: number;
  periodStart: Date | null;
};

export async function reportQuota(
  db: Db,
  instanceId: string,
  items: readonly ReportItem[],
): Promise<string[]> {
  if (items.length === 0) return [];
  // Leases locked in subject order first, as takes lock their quotas: no deadlock between them.
  const { rows } = await sql<{ subject: string }>`
    with v as (
      select * from unnest(${items.map((i) => i.subject)}::uuid[], ${items.map((i) => i.unspent)}::int8[],
        ${items.map((i) => i.seq)}::int4[], ${items.map((i) => i.generation)}::int4[],
        ${items.map((i) => i.periodStart)}::timestamptz[])
        as v(subject, unspent, seq, generation, period_start)
    ), l as (
      -- The same lease, not one made again after a PATCH deleted it (its seq starts over).
      select l.subject, v.unspent from key_quota_leases l join v using (subject)
      where l.instance_id = ${instanceId} and l.seq = v.seq and l.held >= v.unspent
        and l.generation = v.generation and l.period_start is not distinct from v.period_start
      order by l.subject for update of l
    )
    update key_quota_leases x set held = l.unspent, updated_at = now()
    from l where x.subject = l.subject and x.instance_id = ${instanceId}
    returning x.subject`.execute(db);
  return rows.map((r) => r.subject);
}

/**
 * Unspent credit given back to the pool (an idle instance, a graceful stop). Only credit of the
 * lease's own generation and period: a lease voided by a PATCH, or of a period that has ended,
 * gives nothing back (no stale replay). At most what the lease holds.
 */
export async function returnQuota(
  db: Db,
  instanceId: string,
  items: readonly {
    subject: string;
    back: number;
    generation: number;
    periodStart: Date | null;
  }[],
): Promise<void> {
  if (items.length === 0) return;
  const sorted = [...items].sort((a, b) => (a.subject < b.subject ? -1 : 1));
  await sql`
    with v as (
      select * from unnest(${sorted.map((i) => i.subject)}::uuid[], ${sorted.map((i) => i.back)}::int8[],
        ${sorted.map((i) => i.generation)}::int4[], ${sorted.map((i) => i.periodStart)}::timestamptz[])
        as v(subject, back, generation, period_start)
    ), k as (
      select k.subject from key_quotas k join v using (subject)
      where k.generation = v.generation and k.period_start is not distinct from v.period_start
      order by k.subject for update of k
    ), l as (
      select l.subject, least(v.back, l.held) as amount
      from key_quota_leases l join v using (subject) join k using (subject)
      where l.instance_id = ${instanceId} and l.generation = v.generation
        and l.period_start is not distinct from v.period_start
      for update of l
    ), dl as (
      update key_quota_leases x set held = x.held - l.amount
      from l where x.subject = l.subject and x.instance_id = ${instanceId}
    )
    update key_quotas q set pool = q.pool + l.amount from l where q.subject = l.subject`.execute(
    db,
  );
}

/** A key's quota as the API shows it: `remaining` is the pool, refilled if a period began. */
export async function quotaViews(
  db: Db,
  subjects: readonly string[],
): Promise<Map<string, QuotaConfig & { remaining: number }>> {
  if (subjects.length === 0) return new Map();
  const rows = await db
    .selectFrom('key_quotas as k')
    .select([
      'k.subject',
      'k.quota_limit',
      'k.refill_interval',
      'k.refill_amount',
      sql<string>`case when ${CURRENT_PERIOD} > coalesce(k.period_start, '-infinity')
        then k.refill_amount else k.pool end`.as('remaining'),
    ])
    .where('k.subject', 'in', [...new Set(subjects)])
    .execute();
  return new Map(
    rows.map((r) => [
      r.subject,
      {
        limit: Number(r.quota_limit),
        remaining: Number(r.remaining),
        refill:
          r.refill_interval === null
            ? null
            : { interval: r.refill_interval as 'day' | 'month', amount: Number(r.refill_amount) },
      },
    ]),
  );
}

/**
 * Sets a subject's quota (a new one, or a change): its limit and refill, and, when given,
 * what remains. Remaining X means: from now on at most X more are admitted. The pool becomes X
 * minus what instances hold (their `held` is never below what they may still spend). If they
 * hold more than X, their leases are voided (generation + 1, a key notice makes them drop that
 * credit within 1 s) and the pool is X. Without `remaining`, a new quota starts at its limit.
 */
export async function saveQuota(
  db: Db,
  orgId: string,
  subject: string,
  config: QuotaConfig,
  remaining: number | undefined,
): Promise<void> {
  const refillInterval = config.refill?.interval ?? null;
  const refillAmount = config.refill?.amount ?? null;
  await sql`
    insert into key_quotas as k (subject, org_id, quota_limit, refill_interval, refill_amount,
      period_start, pool, updated_at)
    values (${subject}, ${orgId}, ${config.limit}, ${refillInterval}, ${refillAmount},
      case ${refillInterval}::text when 'day' then date_trunc('day', now(), 'UTC')
        when 'month' then date_trunc('month', now(), 'UTC') end,
      ${remaining ?? config.limit}, now())
    on conflict (subject) do update set quota_limit = excluded.quota_limit,
      refill_interval = excluded.refill_interval, refill_amount = excluded.refill_amount,
      -- A lower limit lowers what is left with it.
      pool = least(k.pool, excluded.quota_limit),
      period_start = case when excluded.refill_interval is distinct from k.refill_interval
        then excluded.period_start else k.period_start end,
      -- Another interval: credit held under the old one is void (a new generation).
      generation = case when excluded.refill_interval is distinct from k.refill_interval
        then nextval('key_quota_generations') else k.generation end,
      updated_at = now()`.execute(db);
  await sql`delete from key_quota_leases l using key_quotas k
    where l.subject = ${subject} and k.subject = l.subject and l.generation <> k.generation`.execute(
    db,
  );
  if (remaining === undefined) return;
  await sql`
    with h as (
      select coalesce(sum(l.held), 0) as held from key_quota_leases l join key_quotas k using (subject)
      where l.subject = ${subject} and l.generation = k.generation
        and l.period_start is not distinct from k.period_start
    ), v as (
      update key_quotas k set pool = case when h.held <= ${remaining} then ${remaining} - h.held
          else ${remaining} end,
        generation = case when h.held <= ${remaining} then k.generation
          else nextval('key_quota_generations') end,
        period_start = greatest(${CURRENT_PERIOD}, k.period_start)
      from h where k.subject = ${subject}
      returning k.generation, h.held <= ${remaining} as kept
    )
    delete from key_quota_leases l using v where l.subject = ${subject} and not v.kept`.execute(db);
}

export async function deleteQuota(db: Db, subject: string): Promise<void> {
  await db.deleteFrom('key_quotas').where('subject', '=', subject).execute();
}

/** Fail-open admissions made while takes failed, taken from the pool now (never below 0). */
export async function debitQuota(
  db: Db,
  items: readonly { subject: string; amount: number }[],
): Promise<void> {
  if (items.length === 0) return;
  const sorted = [...items].sort((a, b) => (a.subject < b.subject ? -1 : 1));
  await sql`
    with v as (
      select * from unnest(${sorted.map((i) => i.subject)}::uuid[], ${sorted.map((i) => i.amount)}::int8[])
        as v(subject, amount)
    ), k as (
      select k.subject, v.amount from key_quotas k join v using (subject)
      order by k.subject for update of k
    )
    update key_quotas q set pool = greatest(0, q.pool - k.amount)
    from k where q.subject = k.subject`.execute(db);
}
