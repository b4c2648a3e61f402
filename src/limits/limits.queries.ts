import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { ClaimItem, ClaimResult } from './rate-state.ts';

type Db = Kysely<DB>;

/**
 * One round trip per sync: the instance's heartbeat, and every claim, return and charge of
 * credit, atomically per row. Per item: `kept` is what stays claimed once this instance's return
 * is taken off and its charge (`used`, admitted on its own share while claims failed) added;
 * `after` adds the claim, never past the limit and never below `kept` (a lowered limit grants
 * nothing more). The row lock serialises instances and each SET reads the row as it was, so
 * `last_grant` is exactly what this claim added. Items name distinct rows (mergeItems) and are
 * sorted: concurrent statements lock rows in one order. An item for a window that is over, or
 * more than one window ahead, on the database clock is not applied (`current` false): an
 * instance whose clock estimate is off learns the offset from this answer and asks again.
 */
export async function claimCredit(
  db: Db,
  instanceId: string,
  items: readonly ClaimItem[],
  liveMs: number,
): Promise<ClaimResult> {
  const sorted = [...items].sort(
    (a, b) =>
      (a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : 0) ||
      (a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : 0) ||
      a.windowSeconds - b.windowSeconds ||
      a.windowStart - b.windowStart,
  );
  const col = <T>(f: (i: ClaimItem) => T) => sorted.map(f);
  const kept = sql`greatest(0, c.claimed - excluded.returned) + excluded.used`;
  const after = sql`greatest(${kept}, least(${kept} + excluded.last_grant, excluded.claim_limit))`;
  const { rows } = await sql<{
    kind: 'grant' | 'now';
    subject: string | null;
    policy: string | null;
    window_seconds: number | null;
    window_start: Date;
    granted: string | null;
    claimed: string | null;
    current: boolean | null;
    instances: number | null;
  }>`
    with me as (
      insert into limit_instances (instance_id, seen_at) values (${instanceId}, now())
      on conflict (instance_id) do update set seen_at = now()
      returning 1
    ), u as (
      select u.*, ws + make_interval(secs => w) > now()
          and ws <= now() + make_interval(secs => w) as current
      from unnest(
        ${col((i) => i.subject)}::uuid[], ${col((i) => i.policy)}::text[],
        ${col((i) => i.windowSeconds)}::int4[], ${col((i) => new Date(i.windowStart))}::timestamptz[],
        ${col((i) => i.limit)}::int8[], ${col((i) => i.want)}::int8[], ${col((i) => i.back)}::int8[],
        ${col((i) => i.used)}::int8[]
      ) with ordinality as u(subject, policy, w, ws, lim, want, back, used, n)
    ), c as (
      insert into key_rate_claims as c (subject, policy, window_seconds, window_start,
        claim_limit, claimed, returned, used, last_grant, expires_at)
      select subject, policy, w, ws, lim, used + least(want, greatest(0, lim - used)), back, used,
        least(want, greatest(0, lim - used)), ws + make_interval(secs => 2 * w)
      from u where current order by n
      on conflict (subject, policy, window_seconds, window_start) do update set
        claim_limit = excluded.claim_limit,
        claimed = ${after},
        returned = c.returned + excluded.returned,
        used = c.used + excluded.used,
        last_grant = ${after} - (${kept})
      returning subject, policy, window_seconds, window_start, last_grant, claimed
    )
    select 'grant' as kind, subject, policy, window_seconds, window_start,
      last_grant::text as granted, claimed::text as claimed, true as current, null::int as instances
    from c
    union all
    select 'grant', subject, policy, w, ws, '0', null, false, null from u where not current
    union all
    select 'now', null, null, null, clock_timestamp(), null, null, null,
      (select count(*)::int from limit_instances
        where seen_at > now() - make_interval(secs => ${liveMs / 1000}) and instance_id <> ${instanceId}) + 1
    from me`.execute(db);
  const nowRow = rows.find((r) => r.kind === 'now');
  return {
    dbNow: nowRow ? nowRow.window_start.getTime() : Date.now(),
    instances: nowRow?.instances ?? 1,
    grants: rows
      .filter((r) => r.kind === 'grant')
      .map((r) => ({
        subject: r.subject ?? '',
        policy: r.policy ?? '',
        windowSeconds: r.window_seconds ?? 0,
        windowStart: r.window_start.getTime(),
        granted: Number(r.granted),
        claimed: Number(r.claimed ?? 0),
        current: r.current === true,
      })),
  };
}

/** Rows of windows long past, and instances gone for an hour (served by the expires_at index). */
export async function pruneClaims(db: Db, limit: number): Promise<number> {
  const { numAffectedRows } = await sql`
    delete from key_rate_claims where ctid = any(array(
      select ctid from key_rate_claims where expires_at < now() limit ${limit}))`.execute(db);
  await sql`delete from limit_instances where seen_at < now() - interval '1 hour'`.execute(db);
  return Number(numAffectedRows ?? 0);
}

/** Gives credit back for good (a graceful stop), and the instance's heartbeat with it. */
export async function releaseCredit(
  db: Db,
  instanceId: string,
  items: readonly ClaimItem[],
): Promise<void> {
  if (items.length > 0) await claimCredit(db, instanceId, items, 0);
  await sql`delete from limit_instances where instance_id = ${instanceId}`.execute(db);
}
