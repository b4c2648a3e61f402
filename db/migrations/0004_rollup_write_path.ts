import { sql, type Kysely } from 'kysely';

// The org usage page now reads the hourly rollup only for the keys of one page, by primary key: the
// (org_id, hour) and (org_id, day) indexes serve no query and cost every non-HOT rollup update an
// index insertion. Rollup rows are updated in place by every ingest batch: free space on each page
// (fillfactor) lets those updates stay HOT (no index work, no page split).
const ROLLUPS = [
  'api_key_usage_totals',
  'api_key_usage_hourly',
  'api_key_usage_daily',
  'api_key_usage_routes_daily',
];

export async function up(db: Kysely<unknown>): Promise<void> {
  // The org usage page reads the org's totals rows; org_id never changes, so updates stay HOT.
  await sql`create index api_key_usage_totals_org_id_idx on api_key_usage_totals (org_id)`.execute(
    db,
  );
  await sql`drop index if exists api_key_usage_daily_org_id_day_idx`.execute(db);
  await sql`drop index if exists api_key_usage_hourly_org_id_hour_idx`.execute(db);
  for (const table of ROLLUPS) {
    await sql`alter table ${sql.table(table)} set (fillfactor = 70)`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ROLLUPS) {
    await sql`alter table ${sql.table(table)} reset (fillfactor)`.execute(db);
  }
  await sql`create index api_key_usage_hourly_org_id_hour_idx on api_key_usage_hourly (org_id, hour)`.execute(
    db,
  );
  await sql`create index api_key_usage_daily_org_id_day_idx on api_key_usage_daily (org_id, day)`.execute(
    db,
  );
  await sql`drop index api_key_usage_totals_org_id_idx`.execute(db);
}
