/**
 * SQL of the notices keytrail sends about keys on its own (SPEC §10): each marks the key in the
 * statement that finds it, so a notice is sent once however often, or how concurrently, the
 * finding runs; the caller writes the outbox in the same transaction.
 */
import { sql, type RawBuilder } from 'kysely';
import { isSpike, spikeLateral, spikeWindows } from '../usage/analytics.queries.ts';

export type Notice = {
  id: string;
  org_id: string;
  details: Record<string, unknown>;
};

/**
 * Keys expiring within 7 days that have not had this stage's notice for this expires_at: a
 * 7-day notice, then a 1-day one (a key found inside its last day gets only that). Changing
 * expires_at starts over, because the notice names the expires_at it was for.
 */
const expiringStage = (now: Date) => sql`case
  when k.expires_at <= ${now}::timestamptz + interval '1 day' then 1 else 7 end`;
const expiringDue = (now: Date) => sql`k.revoked_at is null and k.expires_at > ${now}
  and k.expires_at <= ${now}::timestamptz + interval '7 days'
  and (k.expiring_notice_for is distinct from k.expires_at
    or coalesce(k.expiring_notice_days, 8) > ${expiringStage(now)})`;

/** The orgs with a `key.expiring` notice due (markExpiringNotices runs per org). */
export function orgsWithExpiringKeys(now: Date): RawBuilder<{ org_id: string }> {
  return sql<{ org_id: string }>`select distinct k.org_id from api_keys k
    where ${expiringDue(now)}`;
}

/** A key marked for its `key.expiring` notice: the expiry and the stage (7 or 1 days). */
export type ExpiringKey = { id: string; org_id: string; expires_at: Date; stage: number };

export function markExpiringNotices(
  orgId: string,
  now: Date,
  limit: number,
): RawBuilder<ExpiringKey> {
  return sql<ExpiringKey>`
    with due as (
      select k.org_id, k.id, k.expires_at, ${expiringStage(now)} as stage
      from api_keys k
      where k.org_id = ${orgId} and ${expiringDue(now)}
      order by k.expires_at, k.id
      limit ${limit}
      for update of k skip locked
    )
    update api_keys k set expiring_notice_for = due.expires_at, expiring_notice_days = due.stage
    from due where k.org_id = ${orgId} and k.org_id = due.org_id and k.id = due.id
    returning k.id, k.org_id, due.expires_at, due.stage`;
}

/**
 * Spike flags that changed: the org usage page's rule (spikeLateral: the last 24 hours against
 * the daily mean of the 7 × 24 hours before) for keys used in the last 24 hours and keys flagged
 * now. A key whose flag turns on is returned (once per spell); one whose flag turned off is
 * cleared. The flags are also what the org's findings list as spikes.
 */
/** The orgs with keys markSpikes judges: used in the last 24 hours, or flagged now. */
export function orgsToJudgeForSpikes(now: Date): RawBuilder<{ org_id: string }> {
  const { since24h } = spikeWindows(now);
  return sql<{ org_id: string }>`
    select t.org_id from api_key_usage_totals t where t.last_used_at >= ${since24h}
    union
    select k.org_id from api_keys k where k.spike_since is not null`;
}

export function markSpikes(
  orgId: string,
  now: Date,
  rule: { factor: number; minRequests: number },
): RawBuilder<Notice> {
  const { since24h } = spikeWindows(now);
  return sql<Notice>`
    with candidates as (
      select t.org_id, t.key_id from api_key_usage_totals t
      where t.org_id = ${orgId} and t.last_used_at >= ${since24h}
      union
      select k.org_id, k.id from api_keys k where k.org_id = ${orgId} and k.spike_since is not null
    ), judged as (
      select k.org_id, k.id, k.spike_since, sw.last24, sb.prior7d,
        (k.revoked_at is null and ${isSpike(rule.factor, rule.minRequests)}) as spike
      from candidates c join api_keys k on k.org_id = ${orgId} and k.org_id = c.org_id
        and k.id = c.key_id
      ${spikeLateral(sql`${orgId}::uuid`, sql.ref('k.id'), now, rule.minRequests)}
    ), changed as (
      update api_keys k set spike_since = case when j.spike then ${now}::timestamptz end
      from judged j
      where k.org_id = ${orgId} and k.org_id = j.org_id and k.id = j.id
        and j.spike = (k.spike_since is null)
      returning k.id, k.org_id, j.spike, j.last24, j.prior7d
    )
    select id, org_id, jsonb_build_object('last_24h_requests', last24,
      'prior_daily_mean', round(prior7d / 7.0, 1), 'factor', ${rule.factor}::float8) as details
    from changed where spike`;
}

/**
 * A key marked for a use, with the use (its notice's details are made from it in JavaScript:
 * Citus allows only immutable functions in a distributed statement's RETURNING).
 */
export type MarkedUse = {
  id: string;
  org_id: string;
  outcome: string;
  ip: string | null;
  at: Date;
};

export type DeniedUse = {
  keyId: string;
  orgId: string;
  outcome: string;
  ip: string | null;
  at: Date;
};

/**
 * Revoked or expired keys seen in denied attempts, noticed at most once an hour per key: the
 * mark and the returned rows are one statement of the ingest transaction.
 */
export function markRevokedKeyUse(uses: readonly DeniedUse[]): RawBuilder<MarkedUse> {
  return sql<MarkedUse>`
    with u as (
      select * from unnest(${uses.map((u) => u.orgId)}::uuid[], ${uses.map((u) => u.keyId)}::uuid[],
        ${uses.map((u) => u.outcome)}::text[], ${uses.map((u) => u.ip)}::text[],
        ${uses.map((u) => u.at)}::timestamptz[]) as u(org_id, key_id, outcome, ip, at)
    )
    update api_keys k set revoked_use_notified_at = now()
    from u
    where k.org_id = u.org_id and k.id = u.key_id
      and (k.revoked_at is not null or k.expires_at <= now())
      and (k.revoked_use_notified_at is null or k.revoked_use_notified_at <= now() - interval '1 hour')
    returning k.id, k.org_id, u.outcome, u.ip, u.at`;
}

/**
 * Keys refused by their own rate limits (`rate_limited` events), noticed at most once an hour
 * per key, like markRevokedKeyUse: the mark and the returned rows are one statement of the
 * ingest transaction. Only a key still working is noticed (a dead key's refusals are its own).
 */
export function markRateLimited(uses: readonly DeniedUse[]): RawBuilder<MarkedUse> {
  return sql<MarkedUse>`
    with u as (
      select * from unnest(${uses.map((u) => u.orgId)}::uuid[], ${uses.map((u) => u.keyId)}::uuid[],
        ${uses.map((u) => u.ip)}::text[], ${uses.map((u) => u.at)}::timestamptz[])
        as u(org_id, key_id, ip, at)
    )
    update api_keys k set rate_limited_notified_at = now()
    from u
    where k.org_id = u.org_id and k.id = u.key_id
      and k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
      and (k.rate_limited_notified_at is null or k.rate_limited_notified_at <= now() - interval '1 hour')
    returning k.id, k.org_id, 'rate_limited' as outcome, u.ip, u.at`;
}

/**
 * Quotas with what is left of each, one row per quota (its subject): those of a batch's keys
 * (`keyIds`, the notice naming the key used), or given by subject (the notice naming the key the
 * quota belongs to: a subject is the id of the first key of its rotation).
 */
function quotasOf(match: { keys: readonly KeySubject[] } | { subjects: readonly string[] }) {
  // Keys given: the notice names the key used (the lowest id of a subject's keys). Subjects
  // given: the key the quota belongs to, whose id is the subject. Never a join with api_keys:
  // on Citus the quotas live on the coordinator and the keys on the workers.
  const keys =
    'keys' in match
      ? sql`select * from unnest(${match.keys.map((k) => k.key_id)}::uuid[],
          ${match.keys.map((k) => k.subject)}::uuid[]) as k(id, subject)`
      : sql`select s as id, s as subject from unnest(${[...new Set(match.subjects)]}::uuid[]) as s`;
  return sql`
    select distinct on (q.subject) q.subject, k.id as key_id, q.org_id, q.quota_limit,
      q.generation, q.period_start,
      q.pool + coalesce((select sum(l.held) from key_quota_leases l where l.subject = q.subject
        and l.generation = q.generation and l.period_start is not distinct from q.period_start), 0)
        as remaining,
      coalesce(q.period_start, 'epoch') as period
    from (${keys}) k join key_quotas q on q.subject = k.subject
    order by q.subject, k.id`;
}

/** A key and what its limits count against (its limits_id, or its own id). */
export type KeySubject = { key_id: string; subject: string };

/** The limits subjects of these keys (each of its org): one primary-key probe per key. */
export function keySubjects(keys: readonly { orgId: string; keyId: string }[]) {
  return sql<KeySubject>`select k.id as key_id, coalesce(k.limits_id, k.id) as subject
    from unnest(${keys.map((k) => k.orgId)}::uuid[], ${keys.map((k) => k.keyId)}::uuid[])
      as p(org_id, id)
    join api_keys k on k.org_id = p.org_id and k.id = p.id`;
}

/**
 * `key.quota_low`: a quota with under 10 % of its limit left, noticed once per refill period
 * (once for a quota without refill, until a PATCH lifts it again). What is left counts the pool
 * and what instances hold (never below the truth: never early). Checked when a batch of uses is
 * ingested (markQuotaNotices) and, here, when an instance reports what it holds: the report that
 * shows the quota low may come after the last use's ingest. It waits for rows an ingest holds
 * (one ordered statement, like the ingest's: no deadlock between them).
 */
export function markQuotaLow(subjects: readonly string[]): RawBuilder<Notice> {
  return sql<Notice>`
    with q as (${quotasOf({ subjects })}), l as (
      select k.subject from key_quotas k join q using (subject)
      where q.remaining * 10 < q.quota_limit and k.low_noticed_for is distinct from q.period
      order by k.subject for update of k
    )
    update key_quotas k set low_noticed_for = q.period
    from q join l using (subject)
    where k.subject = q.subject
    returning q.key_id as id, q.org_id,
      jsonb_build_object('limit', q.quota_limit, 'remaining', q.remaining) as details`;
}

export type QuotaNotice = Notice & { kind: 'key.quota_low' | 'key.quota_exhausted' };

/** The quota row `k` is still the lease `q` read (lq: low, eq: exhausted) saw. */
const sameLease = (q: 'lq' | 'eq') => sql`${sql.ref(`${q}.subject`)} is not null
  and k.generation = ${sql.ref(`${q}.generation`)}
  and k.period_start is not distinct from ${sql.ref(`${q}.period_start`)}`;
/** The notices due on `k` as it is now (judged again once locked). */
const dueLow = sql`(${sameLease('lq')} and lq.remaining * 10 < lq.quota_limit
  and k.low_noticed_for is distinct from lq.period)`;
const dueExhausted = sql`(${sameLease('eq')} and k.pool = 0
  and k.exhausted_noticed_for is distinct from eq.period)`;

/**
 * The ingest's quota notices, in ONE statement that locks every quota row it may mark in subject
 * order: `key.quota_low` (as markQuotaLow, for the keys of stored successful uses) and
 * `key.quota_exhausted` (a quota that refused a request, a stored quota_exceeded event, with
 * nothing left to take; once per period). Two statements would lock two sets one after the
 * other, and a take holding a lower subject while waiting for a higher one would deadlock with
 * the ingest. One row per notice.
 */
export function markQuotaNotices(o: {
  low: readonly KeySubject[];
  exhausted: readonly KeySubject[];
}): RawBuilder<QuotaNotice> {
  return sql<QuotaNotice>`
    with lq as (${quotasOf({ keys: o.low })}), eq as (${quotasOf({ keys: o.exhausted })}),
    locked as (
      -- Only the rows to mark, judged again on the locked version (a take that committed while
      -- this waited is seen): and of the same generation and period as what was read.
      select k.subject, ${dueLow} as low, ${dueExhausted} as exhausted
      from (select subject from lq union select subject from eq) c
      join key_quotas k using (subject)
      left join lq using (subject)
      left join eq using (subject)
      where ${dueLow} or ${dueExhausted}
      order by k.subject
      for update of k
    ), marked as (
      update key_quotas k set
        low_noticed_for = case when l.low then lq.period else k.low_noticed_for end,
        exhausted_noticed_for = case when l.exhausted then eq.period
          else k.exhausted_noticed_for end
      from locked l left join lq using (subject) left join eq using (subject)
      where k.subject = l.subject
      returning l.low, l.exhausted, lq.key_id as low_key_id, eq.key_id as exhausted_key_id,
        coalesce(lq.org_id, eq.org_id) as org_id, coalesce(lq.quota_limit, eq.quota_limit) as quota_limit,
        lq.remaining
    )
    select 'key.quota_low' as kind, low_key_id as id, org_id,
      jsonb_build_object('limit', quota_limit, 'remaining', remaining) as details
    from marked where low
    union all
    select 'key.quota_exhausted', exhausted_key_id, org_id, jsonb_build_object('limit', quota_limit)
    from marked where exhausted`;
}
