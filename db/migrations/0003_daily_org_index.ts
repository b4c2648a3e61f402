import { sql, type Kysely } from 'kysely';

// The org usage page reads the 7 days before the last 24 hours from the daily rollup of every
// key of an org at once: it needs the org's rows by day, not one key at a time.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index api_key_usage_daily_org_id_day_idx on api_key_usage_daily (org_id, day)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index api_key_usage_daily_org_id_day_idx`.execute(db);
}
