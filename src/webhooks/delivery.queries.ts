/** SQL of the delivery worker: what a job delivers, and the record of each attempt. */
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { WebhookErrorCategory } from './delivery-errors.ts';

type Db = Kysely<DB>;

/**
 * A delivery by its org and id. `orgId` is absent only in a job queued before migration 0014,
 * which is then found by id alone (a scan of every org's deliveries, once per such job).
 */
export type DeliveryRef = { orgId?: string | undefined; id: string };

export type DeliveryWork = {
  id: string;
  status: string;
  job_id: string | null;
  message_id: string;
  occurred_at: Date;
  payload: unknown;
  endpoint_id: string;
  org_id: string;
  url: string;
  enabled: boolean;
  secret: Buffer;
  /** Sealed rotated-away secrets still signing at the time asked for, latest expiry first. */
  previous_secrets: Buffer[];
};

/**
 * What a job delivers, with every secret that signs it at `at`: one statement, so the current
 * secret and the previous ones come from one snapshot (a rotation committed between two reads
 * would list the secret it replaced twice: as the current one and as a previous one).
 */
export async function loadDelivery(
  db: Db,
  ref: DeliveryRef,
  at: Date,
): Promise<DeliveryWork | undefined> {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_messages as m', (j) =>
      j.onRef('m.org_id', '=', 'd.org_id').onRef('m.id', '=', 'd.message_id'),
    )
    .innerJoin('webhook_endpoints as e', (j) =>
      j.onRef('e.org_id', '=', 'd.org_id').onRef('e.id', '=', 'd.endpoint_id'),
    )
    .select([
      'd.id',
      'd.status',
      'd.job_id',
      'd.message_id',
      'm.occurred_at',
      'm.payload',
      'd.endpoint_id',
      'e.org_id',
      'e.url',
      'e.enabled',
      'e.secret',
      sql<Buffer[]>`array(select p.secret from webhook_previous_secrets p
        where p.org_id = e.org_id and p.endpoint_id = e.id and p.expires_at > ${at}
        order by p.expires_at desc)`.as('previous_secrets'),
    ])
    .where('d.id', '=', ref.id)
    .$if(ref.orgId !== undefined, (q) => q.where('d.org_id', '=', ref.orgId!))
    .executeTakeFirst();
}

export async function insertAttempt(
  trx: Db,
  a: {
    orgId: string;
    deliveryId: string;
    at: Date;
    statusCode: number | null;
    latencyMs: number;
    error: WebhookErrorCategory | null;
  },
): Promise<void> {
  await trx
    .insertInto('webhook_attempts')
    .values({
      org_id: a.orgId,
      delivery_id: a.deliveryId,
      attempted_at: a.at,
      status_code: a.statusCode,
      latency_ms: a.latencyMs,
      error: a.error,
    })
    .execute();
}

export async function setDeliveryStatus(
  trx: Db,
  ref: { orgId: string; id: string },
  s: { status: 'pending' | 'succeeded' | 'failed' | 'skipped'; at: Date; attempted: boolean },
): Promise<void> {
  await trx
    .updateTable('webhook_deliveries')
    .set((eb) => ({
      status: s.status,
      ...(s.attempted && { attempts: eb('attempts', '+', 1), last_attempt_at: s.at }),
      ...(s.status === 'succeeded' && { delivered_at: s.at }),
    }))
    .where('org_id', '=', ref.orgId)
    .where('id', '=', ref.id)
    .execute();
}

export async function markEndpointHealthy(
  trx: Db,
  orgId: string,
  endpointId: string,
): Promise<void> {
  await trx
    .updateTable('webhook_endpoints')
    .set({ failing_since: null, last_failure_at: null })
    .where('org_id', '=', orgId)
    .where('id', '=', endpointId)
    .where('failing_since', 'is not', null)
    .execute();
}

/**
 * Notes a failure. A failing spell starts at the first failure after a success, or after a
 * quiet gap longer than `spellGapMs` (a message given up days ago does not make today's first
 * failure "failing for days"). An endpoint failing for `disableAfterMs` is disabled; returns
 * `disabled: true` only to the transaction that disabled it.
 */
export async function markEndpointFailing(
  trx: Db,
  orgId: string,
  endpointId: string,
  at: Date,
  o: { disableAfterMs: number; spellGapMs: number },
): Promise<{ disabled: boolean; failingSince: Date }> {
  // Instants computed here: Citus takes no timestamptz arithmetic (a stable function) in CASE.
  const quietSince = new Date(at.getTime() - o.spellGapMs);
  const disableIfSince = new Date(at.getTime() - o.disableAfterMs);
  const since = sql`case when e.failing_since is null or e.last_failure_at < ${quietSince}::timestamptz
    then ${at}::timestamptz else e.failing_since end`;
  const due = sql`(${since}) <= ${disableIfSince}::timestamptz`;
  const { rows } = await sql<{ failing_since: Date; disabled: boolean }>`
    with before as (
      select enabled from webhook_endpoints
      where org_id = ${orgId} and id = ${endpointId} for no key update
    )
    update webhook_endpoints e set
      failing_since = ${since},
      last_failure_at = ${at},
      enabled = e.enabled and not ${due},
      disabled_reason = case when e.enabled and ${due} then 'failing' else e.disabled_reason end
    from before
    where e.org_id = ${orgId} and e.id = ${endpointId}
    returning e.failing_since, (before.enabled and not e.enabled) as disabled`.execute(trx);
  const r = rows[0];
  return { disabled: r?.disabled ?? false, failingSince: r?.failing_since ?? at };
}

/** A delivery whose job pg-boss gave up on (expired or killed on its last try): failed. */
export async function failAbandoned(trx: Db, ref: DeliveryRef, jobId: string): Promise<boolean> {
  const result = await trx
    .updateTable('webhook_deliveries')
    .set({ status: 'failed' })
    .where('id', '=', ref.id)
    .$if(ref.orgId !== undefined, (q) => q.where('org_id', '=', ref.orgId!))
    .where('job_id', '=', jobId)
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}
