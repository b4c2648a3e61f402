import type { Database } from '../platform/db.ts';
import { deleteExpiredPrevious } from './secrets.queries.ts';
import { pruneMessages } from './webhooks.queries.ts';

/** Webhook messages, their deliveries and attempts are kept this long (then pruned daily). */
export const WEBHOOK_RETENTION_DAYS = 30;
const BATCH = 10_000;

/** Deletes settled messages older than `before`, in bounded statements. */
export async function pruneWebhookMessages(db: Database, before: Date): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await pruneMessages(db, before, BATCH);
    total += n;
    if (n < BATCH) return total;
  }
}

/** Deletes rotated-away secrets whose overlap ended by `now` (sealed, but no longer needed). */
export const pruneExpiredSecrets = (db: Database, now: Date): Promise<number> =>
  deleteExpiredPrevious(db, now);
