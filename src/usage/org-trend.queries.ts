import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';

type Db = Kysely<DB>;

export type OrgDay = {
  day: string;
  requests: number;
  errors_4xx: number;
  errors_5xx: number;
  denied: number;
  limited: number;
};

export type BusyKey = {
  key_id: string;
  name: string;
  prefix: string;
  revoked: boolean;
  requests: number;
};

/** The org's daily totals in [from, to) (UTC days), from api_key_usage_daily_org_id_day_idx. */
export async function orgDays(db: Db, orgId: string, from: string, to: string): Promise<OrgDay[]> {
  const { rows } = await sql<OrgDay>`
    select to_char(day, 'YYYY-MM-DD') as day, sum(requests)::int8 as requests,
      sum(errors_4xx)::int8 as errors_4xx, sum(errors_5xx)::int8 as errors_5xx,
      sum(denied)::int8 as denied, sum(limited)::int8 as limited
    from api_key_usage_daily
    where org_id = ${orgId} and day >= ${from}::date and day < ${to}::date
    group by day order by day`.execute(db);
  return rows.map((r) => ({
    ...r,
    requests: Number(r.requests),
    errors_4xx: Number(r.errors_4xx),
    errors_5xx: Number(r.errors_5xx),
    denied: Number(r.denied),
    limited: Number(r.limited),
  }));
}

/** The org's keys with the most requests in [from, to), most first. */
export async function busiestKeys(
  db: Db,
  orgId: string,
  range: { from: string; to: string; limit: number },
): Promise<BusyKey[]> {
  const { rows } = await sql<BusyKey>`
    with top as (
      select key_id, sum(requests)::int8 as requests from api_key_usage_daily
      where org_id = ${orgId} and day >= ${range.from}::date and day < ${range.to}::date
      group by key_id having sum(requests) > 0
      order by sum(requests) desc, key_id limit ${range.limit}
    )
    select t.key_id, k.name, k.prefix, k.revoked_at is not null as revoked, t.requests
    from top t join api_keys k on k.org_id = ${orgId} and k.id = t.key_id
    order by t.requests desc, t.key_id`.execute(db);
  return rows.map((r) => ({ ...r, requests: Number(r.requests) }));
}
