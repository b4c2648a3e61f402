import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import { isSpike, spikeLateral } from './analytics.queries.ts';

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
 * rule: last 24 h ≥ `spikeMin` and ≥ `factor` × the daily mean of the 7 days before). Spikes are
 * the keys the key watch flagged (`spike_since`, every 5 minutes: the rule over every busy key
 * of every org) that the rule still holds for now: judging each of an org's 10k keys here would
 * read their rollups on every page load (163 ms at 10k keys, 3,000 of them busy).
 */
export async function orgFindings(
  db: Db,
  p: { orgId: string; now: Date; since24h: Date; factor: number; spikeMin: number },
): Promise<FindingRow[]> {
  const recent = new Date(p.now.getTime() - 30 * 86_400_000);
  const { rows } = await sql<FindingRow>`
    (select 'revoked_key_used' as kind, k.id as key_id, k.name, k.prefix, t.last_denied_at as at,
        t.denied_count::int8 as count, null::uuid as other_id, null::float8 as baseline
      from api_keys k join api_key_usage_totals t on t.org_id = k.org_id and t.key_id = k.id
      where k.org_id = ${p.orgId} and t.org_id = ${p.orgId}
        and coalesce(k.revoked_at, k.expires_at) <= ${p.now}
        and t.last_denied_at > coalesce(k.revoked_at, k.expires_at) and t.last_denied_at > ${recent}
      order by t.last_denied_at desc limit ${PER_KIND})
    union all
    (select 'old_key_in_use', o.id, o.name, o.prefix, t.last_used_at, t.request_count::int8,
        n.id, null
      from api_keys o
      join api_keys n on n.org_id = o.org_id and n.rotated_from_id = o.id and n.org_id = ${p.orgId}
      join api_key_usage_totals t on t.org_id = o.org_id and t.key_id = o.id and t.org_id = ${p.orgId}
      where o.org_id = ${p.orgId} and o.revoked_at is null
        and (o.expires_at is null or o.expires_at > ${p.now}) and t.last_used_at > n.created_at
      order by t.last_used_at desc limit ${PER_KIND})
    union all
    (select 'limited', k.id, k.name, k.prefix, t.last_limited_at, t.limited_count::int8, null, null
      from api_keys k join api_key_usage_totals t on t.org_id = k.org_id and t.key_id = k.id
      where k.org_id = ${p.orgId} and t.org_id = ${p.orgId} and t.last_limited_at > ${p.since24h}
      order by t.last_limited_at desc limit ${PER_KIND})
    union all
    (select 'spike', k.id, k.name, k.prefix, k.spike_since, sw.last24, null,
        sb.prior7d::float8 / 7.0
      from api_keys k
      ${spikeLateral(sql`${p.orgId}::uuid`, sql.ref('k.id'), p.now, p.spikeMin)}
      where k.org_id = ${p.orgId} and k.spike_since is not null and k.revoked_at is null
        and ${isSpike(p.factor, p.spikeMin)}
      order by sw.last24 desc limit ${PER_KIND})`.execute(db);
  return rows.map((r) => ({ ...r, count: Number(r.count) }));
}
