import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';

type Db = Kysely<DB>;

/** The org's default rate limits as stored (jsonb, snake_case), or null when never set. */
export async function findOrgRateLimits(db: Db, orgId: string): Promise<unknown> {
  const row = await db
    .selectFrom('org_rate_limit_defaults')
    .select('rate_limits')
    .where('org_id', '=', orgId)
    .executeTakeFirst();
  return row?.rate_limits ?? null;
}

export async function saveOrgRateLimits(
  db: Db,
  orgId: string,
  rateLimits: unknown,
  by: { at: Date; keyId: string },
): Promise<void> {
  await sql`
    insert into org_rate_limit_defaults (org_id, rate_limits, updated_at, updated_by_key_id)
    values (${orgId}, ${JSON.stringify(rateLimits)}::jsonb, ${by.at}, ${by.keyId})
    on conflict (org_id) do update set rate_limits = excluded.rate_limits,
      updated_at = excluded.updated_at, updated_by_key_id = excluded.updated_by_key_id`.execute(db);
}
