import type { Database } from '../platform/db.ts';
import { createMonthPartition } from './usage.queries.ts';

/** Creates the partitions of the current month and the `monthsAhead` next ones (idempotent). */
export async function ensurePartitionsAhead(
  db: Database,
  now: Date,
  monthsAhead = 2,
): Promise<void> {
  for (let i = 0; i <= monthsAhead; i++) {
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + i, 1));
    await createMonthPartition(db, d.getUTCFullYear(), d.getUTCMonth() + 1);
  }
}
