import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// The latency histogram has 24 fixed log-scale buckets (src/usage/histogram.ts): changing the
// bucket bounds needs a new migration and a rebuild, never an edit here.
export async function up(db: Kysely<unknown>): Promise<void> {
  // Raw events, the source of truth. Monthly range partitions named
  // api_key_usage_events_YYYY_MM, created ahead by the worker; deliberately no DEFAULT
  // partition (it would block DETACH PARTITION ... CONCURRENTLY when pruning). No foreign keys:
  // ingest stays one index probe per row and old partitions drop without checks.
  await sql`
    create table api_key_usage_events (
      event_id uuid not null,
      org_id uuid not null,
      key_id uuid not null,
      occurred_at timestamptz not null,
      method text not null,
      route text not null,
      status smallint not null,
      latency_ms real not null,
      ip inet,
      user_agent text,
      outcome text not null,
      primary key (occurred_at, event_id)
    ) partition by range (occurred_at)`.execute(db);
  await sql`create index api_key_usage_events_key_id_occurred_at_idx
    on api_key_usage_events (key_id, occurred_at)`.execute(db);
  // Auditors page through an org's events in (occurred_at, event_id) order.
  await sql`create index api_key_usage_events_org_id_occurred_at_event_id_idx
    on api_key_usage_events (org_id, occurred_at, event_id)`.execute(db);

  await sql`
    create table api_key_usage_hourly (
      key_id uuid not null references api_keys (id) on delete cascade,
      hour timestamptz not null,
      org_id uuid not null,
      requests bigint not null default 0,
      errors_4xx bigint not null default 0,
      errors_5xx bigint not null default 0,
      denied bigint not null default 0,
      latency_sum_ms double precision not null default 0,
      latency_hist bigint[] not null,
      primary key (key_id, hour)
    )`.execute(db);
  await sql`create index api_key_usage_hourly_org_id_hour_idx on api_key_usage_hourly (org_id, hour)`.execute(
    db,
  );

  await sql`
    create table api_key_usage_daily (
      key_id uuid not null references api_keys (id) on delete cascade,
      day date not null,
      org_id uuid not null,
      requests bigint not null default 0,
      errors_4xx bigint not null default 0,
      errors_5xx bigint not null default 0,
      denied bigint not null default 0,
      latency_sum_ms double precision not null default 0,
      latency_hist bigint[] not null,
      primary key (key_id, day)
    )`.execute(db);

  await sql`
    create table api_key_usage_routes_daily (
      key_id uuid not null references api_keys (id) on delete cascade,
      day date not null,
      method text not null,
      route text not null,
      org_id uuid not null,
      requests bigint not null default 0,
      errors bigint not null default 0,
      latency_sum_ms double precision not null default 0,
      primary key (key_id, day, method, route)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table api_key_usage_routes_daily, api_key_usage_daily, api_key_usage_hourly,
    api_key_usage_events`.execute(db);
}
