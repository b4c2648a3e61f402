import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { Org } from './orgs.types.ts';

export async function insertOrg(db: Kysely<DB>, org: Org): Promise<void> {
  await db
    .insertInto('orgs')
    .values({ id: org.id, name: org.name, created_at: org.createdAt })
    .execute();
}

export async function findOrg(db: Kysely<DB>, orgId: string): Promise<Org | null> {
  const row = await db
    .selectFrom('orgs')
    .select(['id', 'name', 'created_at'])
    .where('id', '=', orgId)
    .executeTakeFirst();
  return row ? { id: row.id, name: row.name, createdAt: row.created_at } : null;
}
