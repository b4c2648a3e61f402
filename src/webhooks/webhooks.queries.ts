/** SQL of webhook endpoints, their deliveries and attempts (SPEC §10). */
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import {
  WEBHOOK_OUTBOX_CHANNEL,
  WEBHOOK_TEST_EVENT,
  type WebhookEndpoint,
  type WebhookEventType,
} from './webhooks.types.ts';

type Db = Kysely<DB>;

const ENDPOINT_COLUMNS = [
  'id',
  'org_id',
  'url',
  'description',
  'event_types',
  'enabled',
  'disabled_reason',
  'failing_since',
  'created_at',
  'updated_at',
] as const;

type EndpointRow = {
  id: string;
  org_id: string;
  url: string;
  description: string;
  event_types: string[];
  enabled: boolean;
  disabled_reason: string | null;
  failing_since: Date | null;
  created_at: Date;
  updated_at: Date;
};

const toEndpoint = (r: EndpointRow): WebhookEndpoint => ({
  id: r.id,
  orgId: r.org_id,
  url: r.url,
  description: r.description,
  eventTypes: r.event_types as WebhookEventType[],
  enabled: r.enabled,
  disabledReason: r.disabled_reason,
  failingSince: r.failing_since,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export async function countEndpoints(db: Db, orgId: string): Promise<number> {
  const row = await db
    .selectFrom('webhook_endpoints')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('org_id', '=', orgId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function insertEndpoint(
  trx: Db,
  e: {
    id: string;
    orgId: string;
    url: string;
    description: string;
    eventTypes: string[];
    secret: Buffer;
    enabled: boolean;
    at: Date;
  },
): Promise<void> {
  await trx
    .insertInto('webhook_endpoints')
    .values({
      id: e.id,
      org_id: e.orgId,
      url: e.url,
      description: e.description,
      event_types: e.eventTypes,
      secret: e.secret,
      enabled: e.enabled,
      created_at: e.at,
      updated_at: e.at,
    })
    .execute();
}

export async function listEndpoints(db: Db, orgId: string): Promise<WebhookEndpoint[]> {
  const rows = await db
    .selectFrom('webhook_endpoints')
    .select(ENDPOINT_COLUMNS)
    .where('org_id', '=', orgId)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return rows.map(toEndpoint);
}

export async function findEndpoint(
  db: Db,
  orgId: string,
  id: string,
  o: { forUpdate?: boolean } = {},
): Promise<WebhookEndpoint | undefined> {
  let q = db
    .selectFrom('webhook_endpoints')
    .select(ENDPOINT_COLUMNS)
    .where('org_id', '=', orgId)
    .where('id', '=', id);
  // No key update: key changes writing the outbox hold key-share locks on endpoints meanwhile.
  if (o.forUpdate) q = q.forNoKeyUpdate();
  const row = await q.executeTakeFirst();
  return row && toEndpoint(row);
}

export type EndpointPatch = {
  url?: string;
  description?: string;
  eventTypes?: string[];
  enabled?: boolean;
};

export async function updateEndpoint(
  trx: Db,
  orgId: string,
  id: string,
  patch: EndpointPatch,
  at: Date,
): Promise<void> {
  await trx
    .updateTable('webhook_endpoints')
    .set({
      ...(patch.url !== undefined && { url: patch.url }),
      ...(patch.description !== undefined && { description: patch.description }),
      ...(patch.eventTypes !== undefined && { event_types: patch.eventTypes }),
      // Only a change counts: enabling a disabled endpoint starts over (no failing spell, no
      // reason); disabling an enabled one records who did. The same value again changes nothing.
      ...(patch.enabled !== undefined && {
        enabled: patch.enabled,
        disabled_reason: sql<
          string | null
        >`case when enabled = ${patch.enabled} then disabled_reason
          when ${patch.enabled} then null else 'disabled by an admin' end`,
        failing_since: sql<Date | null>`case when enabled = ${patch.enabled} then failing_since end`,
        last_failure_at: sql<Date | null>`case when enabled = ${patch.enabled} then last_failure_at end`,
      }),
      updated_at: at,
    })
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .execute();
}

export async function deleteEndpoint(trx: Db, orgId: string, id: string): Promise<void> {
  await trx
    .deleteFrom('webhook_endpoints')
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .execute();
}

export type DeliveryRow = {
  id: string;
  message_id: string;
  type: string;
  status: string;
  attempts: number;
  created_at: Date;
  last_attempt_at: Date | null;
  delivered_at: Date | null;
};

/** An endpoint's deliveries, newest first, keyset-paged on (created_at, id). */
export async function listDeliveries(
  db: Db,
  orgId: string,
  endpointId: string,
  p: { limit: number; before?: { createdAt: Date; id: string } | undefined },
): Promise<DeliveryRow[]> {
  let q = db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_messages as m', (j) =>
      j.onRef('m.org_id', '=', 'd.org_id').onRef('m.id', '=', 'd.message_id'),
    )
    .select([
      'd.id',
      'd.message_id',
      'm.type',
      'd.status',
      'd.attempts',
      'd.created_at',
      'd.last_attempt_at',
      'd.delivered_at',
    ])
    .where('d.org_id', '=', orgId)
    .where('d.endpoint_id', '=', endpointId);
  if (p.before) {
    const b = p.before;
    q = q.where(sql<boolean>`(d.created_at, d.id) < (${b.createdAt}, ${b.id}::uuid)`);
  }
  return q.orderBy('d.created_at', 'desc').orderBy('d.id', 'desc').limit(p.limit).execute();
}

export type AttemptRow = {
  delivery_id: string;
  attempted_at: Date;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
};

/** The attempts of these deliveries, oldest first within each. */
export async function attemptsOf(
  db: Db,
  orgId: string,
  deliveryIds: readonly string[],
): Promise<AttemptRow[]> {
  if (deliveryIds.length === 0) return [];
  return db
    .selectFrom('webhook_attempts')
    .select(['delivery_id', 'attempted_at', 'status_code', 'latency_ms', 'error'])
    .where('org_id', '=', orgId)
    .where('delivery_id', 'in', deliveryIds)
    .orderBy('id')
    .execute();
}

/** Puts a delivery back in the outbox (a re-send): the relay queues it again. */
export async function requeueDelivery(
  trx: Db,
  orgId: string,
  endpointId: string,
  deliveryId: string,
): Promise<boolean> {
  const updated = await trx
    .updateTable('webhook_deliveries')
    .set({ status: 'queued' })
    .where('org_id', '=', orgId)
    .where('id', '=', deliveryId)
    .where('endpoint_id', '=', endpointId)
    .where('status', 'in', ['succeeded', 'failed', 'skipped'])
    .executeTakeFirst();
  if (updated.numUpdatedRows === 0n) return false;
  await sql`select pg_notify(${WEBHOOK_OUTBOX_CHANNEL}, '')`.execute(trx);
  return true;
}

/** A test event still on its way to the endpoint (queued, or pending between attempts). */
export async function testInFlight(trx: Db, orgId: string, endpointId: string): Promise<boolean> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from webhook_deliveries d
    join webhook_messages m on m.org_id = d.org_id and m.id = d.message_id
    where d.org_id = ${orgId} and d.endpoint_id = ${endpointId}
      and d.status in ('queued', 'pending')
      and m.type = ${WEBHOOK_TEST_EVENT}`.execute(trx);
  return (rows[0]?.n ?? 0) > 0;
}

/**
 * A test event for one endpoint (whatever it subscribes to): its message and one queued
 * delivery, then the relay is told, as for any outbox event.
 */
export async function insertTestDelivery(
  trx: Db,
  t: { orgId: string; endpointId: string; at: Date; payload: unknown },
): Promise<{ messageId: string; deliveryId: string }> {
  const { rows } = await sql<{ message_id: string; delivery_id: string }>`
    with m as (
      insert into webhook_messages (id, org_id, type, occurred_at, payload)
      values (gen_random_uuid(), ${t.orgId}, ${WEBHOOK_TEST_EVENT}, ${t.at},
        ${JSON.stringify(t.payload)}::jsonb)
      returning id
    ), d as (
      insert into webhook_deliveries (org_id, id, message_id, endpoint_id, status, created_at)
      select ${t.orgId}, gen_random_uuid(), m.id, ${t.endpointId}, 'queued',
        date_trunc('milliseconds', now())
      from m returning id, message_id
    )
    select message_id, id as delivery_id from d`.execute(trx);
  await sql`select pg_notify(${WEBHOOK_OUTBOX_CHANNEL}, '')`.execute(trx);
  const row = rows[0];
  if (!row) throw new Error('test delivery not written');
  return { messageId: row.message_id, deliveryId: row.delivery_id };
}

export async function deliveryStatus(
  db: Db,
  orgId: string,
  endpointId: string,
  deliveryId: string,
): Promise<string | undefined> {
  const row = await db
    .selectFrom('webhook_deliveries')
    .select('status')
    .where('org_id', '=', orgId)
    .where('id', '=', deliveryId)
    .where('endpoint_id', '=', endpointId)
    .executeTakeFirst();
  return row?.status;
}

/**
 * Deletes up to `limit` messages older than `before` (their deliveries and attempts go with
 * them), never one still on its way. Returns how many it deleted.
 */
export async function pruneMessages(db: Db, before: Date, limit: number): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    with gone as (
      delete from webhook_messages m where (m.org_id, m.id) in (
        select m2.org_id, m2.id from webhook_messages m2
        where m2.occurred_at < ${before}
          and not exists (select 1 from webhook_deliveries d
            where d.org_id = m2.org_id and d.message_id = m2.id and d.status in ('queued', 'pending'))
        limit ${limit})
      returning 1
    )
    select count(*)::int as n from gone`.execute(db);
  return rows[0]?.n ?? 0;
}
