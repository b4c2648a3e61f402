import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import { policiesToJson } from '../limits/key-limits.ts';
import type { RatePolicy } from '../limits/limits.types.ts';

type Db = Kysely<DB>;

/**
 * Rate limits belong to what they count against: a key and the keys rotated from it or to it
 * (one `limits_id`) share their windows, so they share their policies too. Returns the keys set.
 */
export async function setRateLimits(
  db: Db,
  orgId: string,
  limitsId: string,
  policies: readonly RatePolicy[],
): Promise<string[]> {
  const rows = await db
    .updateTable('api_keys')
    .set({ rate_limits: JSON.stringify(policiesToJson(policies)) })
    .where('org_id', '=', orgId)
    .where(sql<boolean>`coalesce(limits_id, id) = ${limitsId}`)
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

/** What a key's limits count against: its limits_id, or its own id. */
export async function limitsSubjectOf(
  db: Db,
  orgId: string,
  keyId: string,
): Promise<string | null> {
  const row = await db
    .selectFrom('api_keys')
    .select(sql<string>`coalesce(limits_id, id)`.as('subject'))
    .where('org_id', '=', orgId)
    .where('id', '=', keyId)
    .executeTakeFirst();
  return row?.subject ?? null;
}

/** The keys sharing a limits subject (a key and its rotations). */
export async function keysOfSubject(db: Db, orgId: string, limitsId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('api_keys')
    .select('id')
    .where('org_id', '=', orgId)
    .where(sql<boolean>`coalesce(limits_id, id) = ${limitsId}`)
    .execute();
  return rows.map((r) => r.id);
}

/** The key has no rate limits of its own: the org default applies to it. */
export async function followsOrgDefault(db: Db, orgId: string, keyId: string): Promise<boolean> {
  const row = await db
    .selectFrom('api_keys')
    .select(sql<boolean>`jsonb_array_length(rate_limits) = 0`.as('follows'))
    .where('org_id', '=', orgId)
    .where('id', '=', keyId)
    .executeTakeFirst();
  return row?.follows ?? false;
}
