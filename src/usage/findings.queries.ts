import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';

type Db = Kysely<DB>;

export type FindingRow = {
  kind: 'revoked_key_used' | 'old_key_in_use' | 'limited' | 'spike';
  key_id: string;
  name: string;
  prefix: string;
  at: Date;
  /** revoked_key_used: denied attempts (lifetime); limited: refusals (lifetime); spike: last 24 h. */
  count: number;
  /** old_key_in_use: the key that replaced it; spike: its 7-day daily mean. */
  other_id: string | null;
  baseline: number | null;
};

const PER_KIND = 20;

/**
 * What an org admin should look at (issue 20), each kind the 20 most recent: revoked or expired
 * keys denied since (someone still holds them), keys replaced by a rotation still used since
 * and still working, keys refused by their own limits in the last 24 h, and spikes (SPEC §5.1's
 * rule: last 24 h ≥ `spikeMin` and ≥ `factor` × the daily mean of the 7 days before). Spikes read
 * the hourly rollup of the last 24 h first (by org index), then the 7 days before only for the
 * keys busy enough.
 */
export async function orgFindings(
  db: Db,
  p: { orgId: string; now: Date; since24h: Date; since8d: Date; factor: number; spikeMin: number },
): Promise<FindingRow[]> {
  const recent = new Date(p.now.getTime() - 30 * 86_400_000);
  const { rows } = await sql<FindingRow>`
    (select 'revoked_key_used' as kind, k.id as key_id, k.name, k.prefix, t.last_denied_at as at,
        t.denied_count::int8 as count, null::uuid as other_id, null::float8 as baseline
      from api_keys k join api_key_usage_totals t on t.key_id = k.id
      where k.org_id = ${p.orgId} and t.org_id = ${p.orgId}
        and coalesce(k.revoked_at, k.expires_at) <= ${p.now}
        and t.last_denied_at > coalesce(k.revoked_at, k.expires_at) and t.last_denied_at > ${recent}
      order by t.last_denied_at desc limit ${PER_KIND})
    union all
    (select 'old_key_in_use', o.id, o.name, o.prefix, t.last_used_at, t.request_count::int8,
        n.id, null
      from api_keys o
      join api_keys n on n.rotated_from_id = o.id and n.org_id = ${p.orgId}
      join api_key_usage_totals t on t.key_id = o.id
      where o.org_id = ${p.orgId} and o.revoked_at is null
        and (o.expires_at is null or o.expires_at > ${p.now}) and t.last_used_at > n.created_at
      order by t.last_used_at desc limit ${PER_KIND})
    union all
    (select 'limited', k.id, k.name, k.prefix, t.last_limited_at, t.limited_count::int8, null, null
      from api_keys k join api_key_usage_totals t on t.key_id = k.id
      where k.org_id = ${p.orgId} and t.org_id = ${p.orgId} and t.last_limited_at > ${p.since24h}
      order by t.last_limited_at desc limit ${PER_KIND})
    union all
    (with busy as (
        select key_id, sum(requests)::int8 as last24 from api_key_usage_hourly
        where org_id = ${p.orgId} and hour >= ${p.since24h}
        group by key_id having sum(requests) >= ${p.spikeMin}
      ), base as (
        select b.key_id, b.last24, coalesce(sum(h.requests), 0)::float8 / 7.0 as daily
        from busy b left join api_key_usage_hourly h
          on h.key_id = b.key_id and h.hour >= ${p.since8d} and h.hour < ${p.since24h}
        group by b.key_id, b.last24
      )
      select 'spike', k.id, k.name, k.prefix, ${p.now}::timestamptz, base.last24, null,
        base.daily
      from base join api_keys k on k.id = base.key_id
      where base.last24 >= ${p.factor}::float8 * base.daily
      order by base.last24 desc limit ${PER_KIND})`.execute(db);
  return rows.map((r) => ({ ...r, count: Number(r.count) }));
}
