import type { Database } from '../platform/db.ts';
import { aggregate } from './usage.aggregate.ts';
import {
  createMonthPartition,
  insertEvents,
  upsertPeriods,
  upsertRoutes,
  upsertTotals,
} from './usage.queries.ts';
import type { UsageEvent } from './usage.types.ts';

export type IngestResult = { received: number; inserted: number };

/** SQLSTATE of "no partition of relation … found for row". */
const NO_PARTITION = '23514';

const monthKey = (ms: number): string => new Date(ms).toISOString().slice(0, 7);

/**
 * Writes a batch of events and their rollups in ONE transaction, exactly once: only events the
 * insert actually stored are aggregated, so a replayed job or a racing worker adds nothing.
 * A month without a partition gets one inside the same transaction (see docs/architecture.md).
 */
export function createIngester(db: Database) {
  // Months whose partition this process has seen exist. A prune (in any process) can drop one;
  // the insert then fails with "no partition", the cache is cleared and the batch retried once.
  const knownMonths = new Set<string>();

  async function writeBatch(events: readonly UsageEvent[], months: Set<string>) {
    return db.transaction().execute(async (trx) => {
      for (const month of [...months].filter((m) => !knownMonths.has(m)).sort()) {
        const [year, mm] = month.split('-').map(Number);
        await createMonthPartition(trx, year ?? 1970, mm ?? 1);
      }
      const inserted = await insertEvents(trx, events);
      // Set.delete is true once per stored row: duplicates inside one batch count once too.
      const stored = events.filter((e) => inserted.delete(`${e.eventId}|${e.occurredAt}`));
      const rollups = aggregate(stored);
      // Fixed table order and key-sorted rows: concurrent batches lock in the same order.
      await upsertTotals(trx, rollups.totals);
      await upsertPeriods(trx, 'api_key_usage_hourly', rollups.hourly);
      await upsertPeriods(trx, 'api_key_usage_daily', rollups.daily);
      await upsertRoutes(trx, rollups.routes);
      return { received: events.length, inserted: stored.length };
    });
  }

  async function ingest(events: readonly UsageEvent[]): Promise<IngestResult> {
    if (events.length === 0) return { received: 0, inserted: 0 };
    const months = new Set(events.map((e) => monthKey(e.occurredAt)));
    const result = await writeBatch(events, months).catch((error: unknown) => {
      if ((error as { code?: string }).code !== NO_PARTITION) throw error;
      knownMonths.clear();
      return writeBatch(events, months);
    });
    for (const m of months) knownMonths.add(m);
    return result;
  }

  return { ingest };
}

export type Ingester = ReturnType<typeof createIngester>;
