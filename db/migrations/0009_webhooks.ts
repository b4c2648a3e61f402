import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// Webhooks (SPEC §10). An endpoint per org and URL, its signing secrets sealed with a key derived
// from the pepper. The outbox: a message per event, written in the transaction that changes the
// data, and a delivery per subscribed endpoint (status 'queued'); the worker's relay turns queued
// deliveries into pg-boss jobs in one transaction, so a crash never loses or doubles one.
// api_keys gains the state of the notices sent once: expiring (per expires_at and stage),
// spike (the flag's current spell), revoked_key_used (at most one an hour).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local lock_timeout = '2s'`.execute(db);
  await sql`
    create table webhook_endpoints (
      id uuid primary key,
      org_id uuid not null references orgs (id) on delete cascade,
      url text not null,
      description text not null default '',
      event_types text[] not null,
      secret bytea not null,
      previous_secret bytea,
      previous_secret_expires_at timestamptz,
      enabled boolean not null,
      disabled_reason text,
      failing_since timestamptz,
      last_failure_at timestamptz,
      created_at timestamptz not null,
      updated_at timestamptz not null
    )`.execute(db);
  await sql`create index webhook_endpoints_org_id_idx on webhook_endpoints (org_id, created_at, id)`.execute(
    db,
  );
  await sql`
    create table webhook_messages (
      id uuid primary key,
      org_id uuid not null references orgs (id) on delete cascade,
      type text not null,
      occurred_at timestamptz not null,
      payload jsonb not null
    )`.execute(db);
  await sql`create index webhook_messages_occurred_at_idx on webhook_messages (occurred_at)`.execute(
    db,
  );
  await sql`
    create table webhook_deliveries (
      id uuid primary key,
      message_id uuid not null references webhook_messages (id) on delete cascade,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      status text not null check (status in ('queued', 'pending', 'succeeded', 'failed', 'skipped')),
      attempts integer not null default 0,
      -- The pg-boss job that may deliver it now: a job that is not this one (a re-send made a
      -- new one) does nothing.
      job_id uuid,
      created_at timestamptz not null,
      last_attempt_at timestamptz,
      delivered_at timestamptz,
      unique (endpoint_id, message_id)
    )`.execute(db);
  await sql`create index webhook_deliveries_endpoint_idx
    on webhook_deliveries (endpoint_id, created_at desc, id desc)`.execute(db);
  await sql`create index webhook_deliveries_queued_idx
    on webhook_deliveries (created_at) where status = 'queued'`.execute(db);
  await sql`create index webhook_deliveries_message_idx on webhook_deliveries (message_id)`.execute(
    db,
  );
  await sql`
    create table webhook_attempts (
      id bigint generated always as identity primary key,
      delivery_id uuid not null references webhook_deliveries (id) on delete cascade,
      attempted_at timestamptz not null,
      status_code integer,
      latency_ms integer not null,
      error text
    )`.execute(db);
  await sql`create index webhook_attempts_delivery_idx on webhook_attempts (delivery_id, id)`.execute(
    db,
  );
  await sql`alter table api_keys
    add column expiring_notice_for timestamptz,
    add column expiring_notice_days integer,
    add column spike_since timestamptz,
    add column revoked_use_notified_at timestamptz`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table api_keys
    drop column expiring_notice_for,
    drop column expiring_notice_days,
    drop column spike_since,
    drop column revoked_use_notified_at`.execute(db);
  await sql`drop table webhook_attempts, webhook_deliveries, webhook_messages, webhook_endpoints`.execute(
    db,
  );
}
