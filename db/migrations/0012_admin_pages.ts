import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// What the admin pages of issue 20 need.
// - Export links (SPEC §7, docs/adr/0013-export-links.md): a short-lived, single-use link that
//   downloads one export with the power of the key that made it, so a browser can save a large
//   export as it arrives without the key ever entering a URL. The token is stored as its
//   SHA-256 only (unique: the download finds its link by it). `query` is the validated export
//   request; `to` absent means "when the download starts". The row also carries the export's
//   progress (rows and bytes sent), written by the instance that streams it and read by the
//   page through any instance.
// - dormant_key_policies.last_run_at / last_run: when the daily run last applied the org's
//   policy and what it did (the Policies page shows it; a run that acts on nothing leaves no
//   audit event to show).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table export_links (
      id uuid primary key,
      org_id uuid not null references orgs (id) on delete cascade,
      key_id uuid not null,
      token_hash bytea not null unique,
      query jsonb not null,
      created_at timestamptz not null,
      expires_at timestamptz not null,
      started_at timestamptz,
      -- Written with every progress tick: a streaming export whose ticks stopped (its instance
      -- died, or could not write its end) reads as failed.
      progress_at timestamptz,
      finished_at timestamptz,
      state text not null default 'ready'
        check (state in ('ready', 'streaming', 'done', 'failed')),
      rows_sent bigint not null default 0,
      bytes_sent bigint not null default 0,
      detail text
    )`.execute(db);
  // Old links are deleted per org when the org makes a new one, and by the daily maintenance.
  await sql`create index export_links_org_id_created_at_idx
    on export_links (org_id, created_at)`.execute(db);
  // Nullable, no default: no table rewrite.
  await sql`alter table dormant_key_policies
    add column last_run_at timestamptz,
    add column last_run jsonb`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table dormant_key_policies drop column last_run_at, drop column last_run`.execute(
    db,
  );
  await sql`drop table export_links`.execute(db);
}
