import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// An event's identity is per org: (org_id, occurred_at, event_id). It was (occurred_at, event_id)
// and event_id is the client's on POST /usage-events, so org B's event with the id and time of
// one of org A's was taken for a replay and silently dropped (and an org could probe or suppress
// another's events). The new primary key also serves the auditors' org paging in
// (occurred_at, event_id) order, so the separate (org_id, occurred_at, event_id) index goes.
//
// Cost on a populated table: one unique index built per monthly partition, in this migration's
// transaction, under an ACCESS EXCLUSIVE lock of api_key_usage_events (docs/operations.md
// measures it). Ingest waits meanwhile (its jobs stay queued: nothing is lost), and so do reads
// of raw events; rollup reads do not touch the table.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table api_key_usage_events drop constraint api_key_usage_events_pkey`.execute(db);
  await sql`drop index api_key_usage_events_org_id_occurred_at_event_id_idx`.execute(db);
  await sql`alter table api_key_usage_events add primary key (org_id, occurred_at, event_id)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table api_key_usage_events drop constraint api_key_usage_events_pkey`.execute(db);
  await sql`create index api_key_usage_events_org_id_occurred_at_event_id_idx
    on api_key_usage_events (org_id, occurred_at, event_id)`.execute(db);
  // Fails if two orgs stored the same (occurred_at, event_id) since: then the down is not safe.
  await sql`alter table api_key_usage_events add primary key (occurred_at, event_id)`.execute(db);
}
