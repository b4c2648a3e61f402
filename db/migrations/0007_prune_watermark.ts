import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// Where prune has dropped raw events up to: the end of the newest monthly partition it dropped.
// The ingest refuses to recreate a month before it (a replayed old job, or a shorter
// `prune --retention-days` than the workers' retention, must not bring a pruned month back and
// count its events again). One row; absent until the first partition is dropped.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create table usage_prune_watermark (
    id boolean primary key default true check (id),
    pruned_before timestamptz not null
  )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table usage_prune_watermark`.execute(db);
}
