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
const keySnapshot = (orgId: string) => sql`(select jsonb_build_object(
    'id', k.id, 'name', k.name, 'prefix', k.prefix, 'environment', k.environment,
    'scopes', to_jsonb(k.scopes),
    'status', case when k.revoked_at is not null then 'revoked'
      when k.expires_at <= s.ev_at then 'expired' else 'active' end,
    'created_at', ${iso(sql`k.created_at`)}, 'expires_at', ${iso(sql`k.expires_at`)},
    'revoked_at', ${iso(sql`k.revoked_at`)}, 'revoked_reason', k.revoked_reason)
  from api_keys k where k.org_id = ${orgId} and k.id = s.key_id)`;

/** Runs a statement in the caller's transaction and returns its rows. */
export type RunInTransaction = <T>(statement: RawBuilder<T>) => Promise<T[]>;

/**
 * Writes the events' messages and deliveries in the transaction that made the change, one
 * statement per org (writeOrgOutbox), then tells the relay (on commit) if any delivery was
 * queued. The notification is a statement of its own: on Citus an org's statement runs on the
 * node holding its shard, and the relay listens on the coordinator.
 */
export async function writeOutbox(
  run: RunInTransaction,
  events: readonly OutboxEvent[],
): Promise<void> {
  const byOrg = new Map<string, OutboxEvent[]>();
  for (const e of events) {
    const ofOrg = byOrg.get(e.orgId);
    if (ofOrg) ofOrg.push(e);
    else byOrg.set(e.orgId, [e]);
  }
  let deliveries = 0;
  for (const [orgId, ofOrg] of byOrg) {
    const [row] = await run(writeOrgOutbox(orgId, ofOrg));
    deliveries += row?.deliveries ?? 0;
  }
  if (deliveries > 0) await run(sql`select pg_notify(${WEBHOOK_OUTBOX_CHANNEL}, '')`);
}

/**
 * Writes a message for each event some enabled endpoint of the org subscribes to and a queued
 * delivery per such endpoint. An org without
 * endpoints costs one indexed probe per event and stores nothing. One org per statement, named
 * in every table's condition: on Citus the whole statement runs on the org's shard.
 */
function writeOrgOutbox(
  orgId: string,
  events: readonly OutboxEvent[],
): RawBuilder<{ deliveries: number }> {
  return sql<{ deliveries: number }>`
    with e as (
      select * from unnest(
        ${events.map((e) => e.type)}::text[],
        ${events.map((e) => e.at)}::timestamptz[], ${events.map((e) => e.keyId)}::uuid[],
        ${events.map((e) => JSON.stringify(e.actor))}::jsonb[],
        ${events.map((e) => JSON.stringify(e.details))}::jsonb[]
      ) as e(type, ev_at, key_id, actor, details)
    ), ep as (
      -- Locked so an endpoint deleted meanwhile is skipped (after its delete commits) instead
      -- of failing this transaction's foreign key check.
      select w.id, w.event_types from webhook_endpoints w
      where w.org_id = ${orgId} and w.enabled
        and w.event_types && ${[...new Set(events.map((e) => e.type))]}::text[]
      for key share of w
    ), s as (
      select e.*, gen_random_uuid() as message_id from e
      where e.type in (select unnest(ep.event_types) from ep)
    ), m as (
      insert into webhook_messages (id, org_id, type, occurred_at, payload)
      select s.message_id, ${orgId}, s.type, s.ev_at, jsonb_build_object(
        'type', s.type, 'timestamp', ${iso(sql`s.ev_at`)},
        'data', jsonb_build_object('org_id', ${orgId}::uuid, 'key', ${keySnapshot(orgId)},
          'actor', s.actor, 'details', s.details))
      from s
      returning id, type
    ), d as (
      -- Milliseconds: the deliveries' keyset cursor carries a JavaScript Date.
      insert into webhook_deliveries (org_id, id, message_id, endpoint_id, status, created_at)
      select ${orgId}, gen_random_uuid(), m.id, ep.id, 'queued', date_trunc('milliseconds', now())
      from m join ep on m.type = any(ep.event_types)
      returning 1
    )
    select count(*)::int as deliveries from d`;
}

/**
 * The orgs with queued deliveries, those queued longest first (no lock: claimQueued takes the
 * deliveries, per org). Served by the partial index of queued deliveries.
 */
export function queuedOrgs(limit: number): RawBuilder<{ org_id: string }> {
  return sql<{ org_id: string }>`select org_id from webhook_deliveries
    where status = 'queued' group by org_id order by min(created_at) limit ${limit}`;
}

/**
 * An org's queued deliveries for the relay, oldest first; a concurrent relay takes others. One
 * org per statement: on Citus a locking read must stay on one shard.
 */
export function claimQueued(
  orgId: string,
  limit: number,
): RawBuilder<{ id: string; org_id: string }> {
  return sql<{ id: string; org_id: string }>`select d.id, d.org_id
    from webhook_deliveries d
    where d.org_id = ${orgId} and d.status = 'queued'
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
