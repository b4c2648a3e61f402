/** SQL of the delivery worker: what a job delivers, and the record of each attempt. */
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';

type Db = Kysely<DB>;

export type DeliveryWork = {
  id: string;
  status: string;
  message_id: string;
  occurred_at: Date;
  payload: unknown;
  endpoint_id: string;
  org_id: string;
  url: string;
  enabled: boolean;
  secret: Buffer;
  previous_secret: Buffer | null;
  previous_secret_expires_at: Date | null;
};

export async function loadDelivery(db: Db, deliveryId: string): Promise<DeliveryWork | undefined> {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_messages as m', 'm.id', 'd.message_id')
    .innerJoin('webhook_endpoints as e', 'e.id', 'd.endpoint_id')
    .select([
      'd.id',
      'd.status',
      'd.message_id',
      'm.occurred_at',
      'm.payload',
      'd.endpoint_id',
      'e.org_id',
      'e.url',
      'e.enabled',
      'e.secret',
      'e.previous_secret',
      'e.previous_secret_expires_at',
    ])
    .where('d.id', '=', deliveryId)
    .executeTakeFirst();
}

export async function insertAttempt(
  trx: Db,
  a: {
    deliveryId: string;
    at: Date;
    statusCode: number | null;
    latencyMs: number;
    error: string | null;
  },
): Promise<void> {
  await trx
    .insertInto('webhook_attempts')
    .values({
      delivery_id: a.deliveryId,
      attempted_at: a.at,
      status_code: a.statusCode,
      latency_ms: a.latencyMs,
      error: a.error === null ? null : a.error.slice(0, 500),
    })
    .execute();
}

export async function setDeliveryStatus(
  trx: Db,
  deliveryId: string,
  s: { status: 'pending' | 'succeeded' | 'failed' | 'skipped'; at: Date; attempted: boolean },
): Promise<void> {
  await trx
    .updateTable('webhook_deliveries')
    .set((eb) => ({
      status: s.status,
      ...(s.attempted && { attempts: eb('attempts', '+', 1), last_attempt_at: s.at }),
      ...(s.status === 'succeeded' && { delivered_at: s.at }),
    }))
    .where('id', '=', deliveryId)
    .execute();
}

export async function markEndpointHealthy(trx: Db, endpointId: string): Promise<void> {
  await trx
    .updateTable('webhook_endpoints')
    .set({ failing_since: null })
    .where('id', '=', endpointId)
    .where('failing_since', 'is not', null)
    .execute();
}

/**
 * Notes a failure: the failing spell starts at the first one. An endpoint failing for longer
 * than `disableAfterMs` is disabled; returns true only to the transaction that disabled it.
 */
export async function markEndpointFailing(
  trx: Db,
  endpointId: string,
  at: Date,
  disableAfterMs: number,
): Promise<{ disabled: boolean; failingSince: Date }> {
  const row = await sql<{ failing_since: Date; disabled: boolean }>`
    with before as (select enabled from webhook_endpoints where id = ${endpointId} for update)
    update webhook_endpoints e set
      failing_since = coalesce(e.failing_since, ${at}),
      enabled = e.enabled and coalesce(e.failing_since, ${at}) > ${at}::timestamptz - ${`${disableAfterMs} milliseconds`}::interval,
      disabled_reason = case
        when e.enabled and coalesce(e.failing_since, ${at}) <= ${at}::timestamptz - ${`${disableAfterMs} milliseconds`}::interval
        then 'failing' else e.disabled_reason end
    from before
    where e.id = ${endpointId}
    returning e.failing_since, (before.enabled and not e.enabled) as disabled`.execute(trx);
  const r = row.rows[0];
  return { disabled: r?.disabled ?? false, failingSince: r?.failing_since ?? at };
}
