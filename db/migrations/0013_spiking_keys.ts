import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// The keys flagged as spiking (api_keys.spike_since, set by the 5-minute key watch): the org's
// findings list them and every watch re-judges them. A partial index holds only those keys, so
// neither reads all of an org's keys, nor all keys, to find a few (docs/adr/0014-spike-windows.md).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index api_keys_spiking_idx on api_keys (org_id) where spike_since is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index api_keys_spiking_idx`.execute(db);
}
