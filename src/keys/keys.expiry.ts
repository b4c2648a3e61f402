import type { Database } from '../platform/db.ts';
import { recordAudits, type NewAuditEntry } from '../audit/audit.service.ts';
import { countExpiredUnaudited, markExpiredKeys, orgsWithExpiredKeys } from './keys.queries.ts';

/** Keys marked per transaction: bounded transactions and audit inserts, whatever the backlog. */
const BATCH = 1000;

/**
 * Writes one `key.expired` audit entry (actor `system`) for each key whose expires_at has passed
 * since its expiry was last audited, and marks it in the same transaction: a key is audited once
 * per expiry, however often or concurrently this runs. A revoked key is not expired (statusOf:
 * revoked wins). Returns how many keys it marked (dry run: would mark).
 */
export async function auditExpiredKeys(
  db: Database,
  o: { now: Date; dryRun: boolean },
): Promise<number> {
  if (o.dryRun) return countExpiredUnaudited(db, o.now);
  let total = 0;
  for (const orgId of await orgsWithExpiredKeys(db, o.now)) {
    total += await auditOrgExpiredKeys(db, orgId, o.now);
  }
  return total;
}

/** One org's expired keys, a batch per transaction. */
async function auditOrgExpiredKeys(db: Database, orgId: string, now: Date): Promise<number> {
  let total = 0;
  for (;;) {
    const marked = await db.transaction().execute(async (trx) => {
      const keys = await markExpiredKeys(trx, orgId, now, BATCH);
      await recordAudits(
        trx,
        keys.map((k): NewAuditEntry => ({
          orgId: k.orgId,
          at: now,
          actor: { type: 'system' },
          action: 'key.expired',
          target: { type: 'api_key', id: k.id },
          details: { expires_at: k.expiresAt.toISOString(), prefix: k.prefix },
        })),
      );
      return keys.length;
    });
    total += marked;
    if (marked < BATCH) return total;
  }
}
