/** SQL of an endpoint's signing secrets: the current one, and those rotated away still signing. */
import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';

type Db = Kysely<DB>;

/**
 * Drops the previous secrets expired by `at`; returns the expiries of those left, soonest first
 * (the caller holds the endpoint's row lock, so a concurrent rotation waits for this one).
 */
export async function pruneAndListPrevious(trx: Db, orgId: string, endpointId: string, at: Date) {
  await trx
    .deleteFrom('webhook_previous_secrets')
    .where('org_id', '=', orgId)
    .where('endpoint_id', '=', endpointId)
    .where('expires_at', '<=', at)
    .execute();
  const rows = await trx
    .selectFrom('webhook_previous_secrets')
    .select('expires_at')
    .where('org_id', '=', orgId)
    .where('endpoint_id', '=', endpointId)
    .orderBy('expires_at')
    .execute();
  return rows.map((r) => r.expires_at);
}

/** The new secret signs from now on; the one it replaces beside it until `previousUntil`. */
export async function rotateSecret(
  trx: Db,
  orgId: string,
  id: string,
  s: { secret: Buffer; previousUntil: Date; at: Date },
): Promise<void> {
  await trx
    .insertInto('webhook_previous_secrets')
    .columns(['org_id', 'endpoint_id', 'secret', 'expires_at'])
    .expression((eb) =>
      eb
        .selectFrom('webhook_endpoints')
        .select((e) => [
          'org_id',
          e.ref('id').as('endpoint_id'),
          'secret',
          e.val(s.previousUntil).as('expires_at'),
        ])
        .where('org_id', '=', orgId)
        .where('id', '=', id),
    )
    .execute();
  await trx
    .updateTable('webhook_endpoints')
    .set({ secret: s.secret, updated_at: s.at })
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .execute();
}

/**
 * Deletes every endpoint's previous secrets expired by `at` (daily maintenance): they no longer
 * sign, and a rotation prunes only its own endpoint's. A handful of rows per endpoint at most.
 */
export async function deleteExpiredPrevious(db: Db, at: Date): Promise<number> {
  const result = await db
    .deleteFrom('webhook_previous_secrets')
    .where('expires_at', '<=', at)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
