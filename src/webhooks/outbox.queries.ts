/**
 * The outbox (SPEC §10): messages and their deliveries are written by the transaction that
 * changes the data, so an event exists exactly when its change committed. The relay then turns
 * queued deliveries into pg-boss jobs, again in one transaction.
 */
import { sql, type RawBuilder } from 'kysely';
import { WEBHOOK_OUTBOX_CHANNEL, type OutboxEvent } from './webhooks.types.ts';

/** An ISO-8601 UTC instant with milliseconds, as JSON clients expect it. */
const iso = (column: RawBuilder<unknown>) =>
  sql`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** The key as a webhook payload shows it, read in the writing transaction (after the change). */
const keySnapshot = sql`(select jsonb_build_object(
    'id', k.id, 'name', k.name, 'prefix', k.prefix, 'environment', k.environment,
    'scopes', to_jsonb(k.scopes),
    'status', case when k.revoked_at is not null then 'revoked'
      when k.expires_at <= s.ev_at then 'expired' else 'active' end,
    'created_at', ${iso(sql`k.created_at`)}, 'expires_at', ${iso(sql`k.expires_at`)},
    'revoked_at', ${iso(sql`k.revoked_at`)}, 'revoked_reason', k.revoked_reason)
  from api_keys k where k.org_id = s.org_id and k.id = s.key_id)`;

/**
 * Writes a message for each event some enabled endpoint of its org subscribes to, a queued
 * delivery per such endpoint, and a notification for the relay (sent on commit). An org without
 * endpoints costs one indexed probe per event and stores nothing.
 */
export function writeOutbox(events: readonly OutboxEvent[]): RawBuilder<{ deliveries: number }> {
  return sql<{ deliveries: number }>`
    with e as (
      select * from unnest(
        ${events.map((e) => e.orgId)}::uuid[], ${events.map((e) => e.type)}::text[],
        ${events.map((e) => e.at)}::timestamptz[], ${events.map((e) => e.keyId)}::uuid[],
        ${events.map((e) => JSON.stringify(e.actor))}::jsonb[],
        ${events.map((e) => JSON.stringify(e.details))}::jsonb[]
      ) as e(org_id, type, ev_at, key_id, actor, details)
    ), s as (
      select e.*, gen_random_uuid() as message_id from e
      where exists (select 1 from webhook_endpoints w
        where w.org_id = e.org_id and w.enabled and e.type = any(w.event_types))
    ), m as (
      insert into webhook_messages (id, org_id, type, occurred_at, payload)
      select s.message_id, s.org_id, s.type, s.ev_at, jsonb_build_object(
        'type', s.type, 'timestamp', ${iso(sql`s.ev_at`)},
        'data', jsonb_build_object('org_id', s.org_id, 'key', ${keySnapshot},
          'actor', s.actor, 'details', s.details))
      from s
      returning id, org_id, type
    ), ep as (
      -- Locked so an endpoint deleted meanwhile is skipped (after its delete commits) instead
      -- of failing this transaction's foreign key check.
      select w.id, w.org_id, w.event_types from webhook_endpoints w
      where w.enabled and w.org_id in (select org_id from m)
      for key share of w
    ), d as (
      -- Milliseconds: the deliveries' keyset cursor carries a JavaScript Date.
      insert into webhook_deliveries (org_id, id, message_id, endpoint_id, status, created_at)
      select m.org_id, gen_random_uuid(), m.id, ep.id, 'queued', date_trunc('milliseconds', now())
      from m join ep on ep.org_id = m.org_id and m.type = any(ep.event_types)
      returning 1
    )
    select (select count(*) from d)::int as deliveries,
      (select count(*) from (select pg_notify(${WEBHOOK_OUTBOX_CHANNEL}, '') from d limit 1) n)::int
        as notified`;
}

/** Queued deliveries for the relay (and their org), oldest first; a concurrent relay takes others. */
export function claimQueued(limit: number): RawBuilder<{ id: string; org_id: string }> {
  return sql<{ id: string; org_id: string }>`select d.id, d.org_id
    from webhook_deliveries d
    where d.status = 'queued'
    order by d.created_at limit ${limit} for update of d skip locked`;
}

/** Each delivery's job: the only job that may deliver it. */
export function markPending(
  deliveries: readonly { orgId: string; id: string; jobId: string }[],
): RawBuilder<never> {
  return sql<never>`update webhook_deliveries d set status = 'pending', job_id = j.job_id
    from unnest(${deliveries.map((d) => d.orgId)}::uuid[], ${deliveries.map((d) => d.id)}::uuid[],
      ${deliveries.map((d) => d.jobId)}::uuid[]) as j(org_id, id, job_id)
    where d.org_id = j.org_id and d.id = j.id`;
}
