import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// Expiry is computed from expires_at, so nothing records that a key's expiry was audited: prune
// writes one `key.expired` entry per expiry and sets expiry_audited_at in the same transaction,
// so a later or concurrent prune finds nothing left to audit. Changing expires_at clears it (a
// key extended after it expired can expire, and be audited, again).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table api_keys add column expiry_audited_at timestamptz`.execute(db);
  // Prune looks for expired keys not audited yet: only keys with an expiry still to audit are
  // indexed, so the daily scan reads the keys that expire, not the whole table.
  await sql`create index api_keys_expires_at_idx on api_keys (expires_at)
    where revoked_at is null and expiry_audited_at is null and expires_at is not null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index api_keys_expires_at_idx`.execute(db);
  await sql`alter table api_keys drop column expiry_audited_at`.execute(db);
}
