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

const monthKey = (ms: number): string => new Date(ms).toISOString().slice(0, 7);

/**
 * Writes a batch of events and their rollups in ONE transaction, exactly once: only events the
 * insert actually stored are aggregated, so a replayed job or a racing worker adds nothing.
 * A month without a partition gets one inside the same transaction (see docs/architecture.md).
 */
export function createIngester(db: Database) {
  const knownMonths = new Set<string>();

  async function ensureMonths(trx: Database, events: readonly UsageEvent[]): Promise<void> {
    const missing = new Set(
      events.map((e) => monthKey(e.occurredAt)).filter((m) => !knownMonths.has(m)),
    );
    for (const month of [...missing].sort()) {
      const [year, mm] = month.split('-').map(Number);
      await createMonthPartition(trx, year ?? 1970, mm ?? 1);
    }
  }

  async function ingest(events: readonly UsageEvent[]): Promise<IngestResult> {
    if (events.length === 0) return { received: 0, inserted: 0 };
    const months = new Set(events.map((e) => monthKey(e.occurredAt)));
    const result = await db.transaction().execute(async (trx) => {
      await ensureMonths(trx, events);
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
    for (const m of months) knownMonths.add(m);
    return result;
  }

  return { ingest, forgetPartitions: () => knownMonths.clear() };
}

export type Ingester = ReturnType<typeof createIngester>;
