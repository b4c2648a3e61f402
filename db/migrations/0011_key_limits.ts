import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// Per-key limits (SPEC §11, docs/adr/0012-per-key-limits.md), the part that is configuration
// and log; the coordination tables (rate windows, quota leases) come with the code that uses
// them.
// - api_keys: rate_limits (null: follow the org default; []: unlimited), allowed_ips ('{}': any
//   address), limits_id (what limits count against: rotate copies it, so a key and its successor
//   share one window and one quota; null reads as the key's own id), and the hourly mark of the
//   key.rate_limited notice.
// - org_rate_limit_defaults: the org default, for keys whose rate_limits is null.
// - Rollups count refusals by a limit (rate_limited, quota_exceeded, ip_denied) as `limited`,
//   apart from `denied` (a dead key or a missing scope) and from requests.
// Every added column is nullable or has a constant default: no table rewrite. The checks are
// NOT VALID: every existing row holds the default, which satisfies them, and validating would
// scan api_keys while this transaction holds its ACCESS EXCLUSIVE lock.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local lock_timeout = '2s'`.execute(db);
  await sql`
    alter table api_keys
      add column rate_limits jsonb,
      add column allowed_ips cidr[] not null default '{}',
      add column limits_id uuid,
      add column rate_limited_notified_at timestamptz,
      add constraint api_keys_rate_limits_check check (rate_limits is null
        or (jsonb_typeof(rate_limits) = 'array' and jsonb_array_length(rate_limits) <= 3)) not valid,
      add constraint api_keys_allowed_ips_check check (cardinality(allowed_ips) <= 100) not valid
  `.execute(db);
  await sql`
    create table org_rate_limit_defaults (
      org_id uuid primary key references orgs (id) on delete cascade,
      rate_limits jsonb not null check (jsonb_typeof(rate_limits) = 'array'
        and jsonb_array_length(rate_limits) <= 3),
      updated_at timestamptz not null,
      updated_by_key_id uuid
    )`.execute(db);
  await sql`
    alter table api_key_usage_totals
      add column limited_count bigint not null default 0,
      add column last_limited_at timestamptz`.execute(db);
  await sql`alter table api_key_usage_hourly add column limited bigint not null default 0`.execute(
    db,
  );
  await sql`alter table api_key_usage_daily add column limited bigint not null default 0`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table api_key_usage_daily drop column limited`.execute(db);
  await sql`alter table api_key_usage_hourly drop column limited`.execute(db);
  await sql`alter table api_key_usage_totals drop column limited_count, drop column last_limited_at`.execute(
    db,
  );
  await sql`drop table org_rate_limit_defaults`.execute(db);
  await sql`alter table api_keys drop column rate_limits, drop column allowed_ips,
    drop column limits_id, drop column rate_limited_notified_at`.execute(db);
}
