import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// Dormant-key policies (SPEC §10): one row per org that has set one (no row: off). The daily run
// notifies a dormant key once per dormant spell: dormant_notified_at is set in the transaction
// that audits the notice, and a key used since (last use after it) can be notified again.
// Audit entries of policy actions carry actor_type 'policy'. A policy acts with the authority
// of the key that set it, never more (acting_scopes).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local lock_timeout = '2s'`.execute(db);
  await sql`
    create table dormant_key_policies (
      org_id uuid primary key references orgs (id) on delete cascade,
      enabled boolean not null,
      after_days integer not null check (after_days between 7 and 3650),
      action text not null check (action in ('notify', 'revoke')),
      exclude_environments text[] not null default '{}',
      exclude_scopes text[] not null default '{}',
      -- The scopes of the key that set the policy: a revoking policy revokes only keys those
      -- scopes could revoke by hand (null: an org:admin key, which covers every key).
      acting_scopes text[],
      updated_at timestamptz not null,
      updated_by_key_id uuid
    )`.execute(db);
  await sql`alter table api_keys add column dormant_notified_at timestamptz`.execute(db);
  // Looser than the constraint it replaces, so NOT VALID: no scan of the audit trail while the
  // migration's transaction holds its locks.
  await sql`alter table audit_events drop constraint audit_events_actor_type_check,
    add constraint audit_events_actor_type_check
    check (actor_type in ('key', 'operator', 'system', 'policy')) not valid`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // Audit history is kept: the old constraint comes back NOT VALID over the 'policy' rows.
  await sql`alter table audit_events drop constraint audit_events_actor_type_check,
    add constraint audit_events_actor_type_check
    check (actor_type in ('key', 'operator', 'system')) not valid`.execute(db);
  await sql`alter table api_keys drop column dormant_notified_at`.execute(db);
  await sql`drop table dormant_key_policies`.execute(db);
}
