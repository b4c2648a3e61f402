import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table orgs (
      id uuid primary key,
      name text not null check (char_length(name) between 1 and 200),
      created_at timestamptz not null default now()
    )`.execute(db);

  await sql`
    create table api_keys (
      id uuid primary key,
      org_id uuid not null references orgs (id) on delete cascade,
      name text not null check (char_length(name) between 1 and 200),
      environment text not null check (environment in ('live', 'test')),
      prefix text not null,
      -- HMAC-SHA256(pepper, plaintext): the plaintext is never stored.
      key_hash bytea not null,
      scopes text[] not null default '{}',
      -- Millisecond precision: list cursors carry created_at as a JS timestamp.
      created_at timestamptz not null default date_trunc('milliseconds', now()),
      expires_at timestamptz,
      revoked_at timestamptz,
      revoked_reason text,
      rotated_from_id uuid references api_keys (id) on delete set null,
      created_by_key_id uuid
    )`.execute(db);
  // Authentication looks keys up by hash: unique, so a lookup returns at most one row.
  await sql`create unique index api_keys_key_hash_idx on api_keys (key_hash)`.execute(db);
  // Listing pages walk (created_at, id) backwards within an org.
  await sql`create index api_keys_org_id_created_at_id_idx on api_keys (org_id, created_at desc, id desc)`.execute(
    db,
  );
  await sql`create index api_keys_rotated_from_id_idx on api_keys (rotated_from_id)`.execute(db);

  await sql`
    create table audit_events (
      id uuid primary key,
      org_id uuid not null references orgs (id) on delete cascade,
      occurred_at timestamptz not null default now(),
      actor_type text not null check (actor_type in ('key', 'operator', 'system')),
      actor_key_id uuid,
      action text not null,
      target_type text not null,
      target_id uuid,
      details jsonb not null default '{}'
    )`.execute(db);
  await sql`create index audit_events_org_id_occurred_at_id_idx on audit_events (org_id, occurred_at, id)`.execute(
    db,
  );

  // One row per key, maintained by the usage worker; the ApiKey resource reads it.
  await sql`
    create table api_key_usage_totals (
      key_id uuid primary key references api_keys (id) on delete cascade,
      org_id uuid not null references orgs (id) on delete cascade,
      request_count bigint not null default 0,
      errors_4xx bigint not null default 0,
      errors_5xx bigint not null default 0,
      denied_count bigint not null default 0,
      first_used_at timestamptz,
      last_used_at timestamptz,
      last_used_ip inet,
      last_denied_at timestamptz
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table api_key_usage_totals, audit_events, api_keys, orgs`.execute(db);
}
