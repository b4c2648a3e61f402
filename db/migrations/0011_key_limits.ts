import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// Per-key limits (SPEC §11, docs/adr/0012-per-key-limits.md).
// - api_keys: rate_limits ([]: none of its own, so the org default applies, if any), allowed_ips ('{}': any
//   address), limits_id (what limits count against: rotate copies it, so a key and its successor
//   share one window and one quota; null reads as the key's own id), and the hourly mark of the
//   key.rate_limited notice.
// - org_rate_limit_defaults: the org default, for keys without rate limits of their own.
// - key_rate_claims: how much of each window of each policy the instances have claimed (credit
//   they admit requests against), and limit_instances, their heartbeats. UNLOGGED: written
//   every few hundred ms and worthless after a crash; a Postgres crash empties them, so the
//   windows current then may admit their limit once more (docs/operations.md).
// - Rollups count refusals by a limit (rate_limited, quota_exceeded, ip_denied) as `limited`,
//   apart from `denied` (a dead key or a missing scope) and from requests.
// Every added column is nullable or has a constant default: no table rewrite. The checks are
// NOT VALID: every existing row holds the default, which satisfies them, and validating would
// scan api_keys while this transaction holds its ACCESS EXCLUSIVE lock.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local lock_timeout = '2s'`.execute(db);
  await sql`
    alter table api_keys
      add column rate_limits jsonb not null default '[]',
      add column allowed_ips cidr[] not null default '{}',
      add column limits_id uuid,
      add column rate_limited_notified_at timestamptz,
      add constraint api_keys_rate_limits_check check (jsonb_typeof(rate_limits) = 'array'
        and jsonb_array_length(rate_limits) <= 3) not valid,
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
    create unlogged table limit_instances (
      instance_id uuid primary key,
      seen_at timestamptz not null
    )`.execute(db);
  // One row per limits subject (a key and its rotations), policy and window. claimed never
  // exceeds claim_limit: no instance holds credit past the limit (docs/adr/0012 §3).
  await sql`
    create unlogged table key_rate_claims (
      subject uuid not null,
      policy text not null,
      window_seconds integer not null,
      window_start timestamptz not null,
      claim_limit bigint not null,
      claimed bigint not null check (claimed >= 0),
      returned bigint not null default 0,
      -- Admitted by instances on their own share while claims failed, charged when they came back.
      used bigint not null default 0,
      last_grant bigint not null,
      expires_at timestamptz not null,
      primary key (subject, policy, window_seconds, window_start)
    )`.execute(db);
  await sql`create index key_rate_claims_expires_at_idx on key_rate_claims (expires_at)`.execute(
    db,
  );
  // Quotas: one row per limits subject. `pool` is what no instance holds; instances take credit
  // from it in chunks (a lease per instance: `held` is never below what that instance may still
  // spend) and give back what they do not use. A refill (UTC day or month) resets the pool
  // lazily, at the first take of a new period; credit of an old period dies with it.
  // Generations come from one sequence: a quota removed and set again never reuses a number an
  // instance may still hold credit under.
  await sql`create sequence key_quota_generations as integer`.execute(db);
  await sql`
    create table key_quotas (
      subject uuid primary key,
      org_id uuid not null references orgs (id) on delete cascade,
      quota_limit bigint not null check (quota_limit between 1 and 1000000000000),
      refill_interval text check (refill_interval in ('day', 'month')),
      refill_amount bigint check (refill_amount between 1 and 1000000000000),
      period_start timestamptz,
      pool bigint not null check (pool >= 0),
      generation integer not null default nextval('key_quota_generations'),
      low_noticed_for timestamptz,
      exhausted_noticed_for timestamptz,
      updated_at timestamptz not null,
      check ((refill_interval is null) = (refill_amount is null))
    )`.execute(db);
  await sql`create index key_quotas_org_id_idx on key_quotas (org_id)`.execute(db);
  await sql`
    create table key_quota_leases (
      subject uuid not null references key_quotas (subject) on delete cascade,
      instance_id uuid not null,
      generation integer not null,
      period_start timestamptz,
      held bigint not null check (held >= 0),
      seq integer not null default 0,
      updated_at timestamptz not null,
      primary key (subject, instance_id)
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
  await sql`drop table key_quota_leases, key_quotas, org_rate_limit_defaults, key_rate_claims,
    limit_instances`.execute(db);
  await sql`drop sequence key_quota_generations`.execute(db);
  await sql`alter table api_keys drop column rate_limits, drop column allowed_ips,
    drop column limits_id, drop column rate_limited_notified_at`.execute(db);
}
