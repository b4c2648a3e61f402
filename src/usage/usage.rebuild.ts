import { DEFAULT_ROUTES_PER_KEY_DAY } from './usage.ingest.ts';
import type { Database } from '../platform/db.ts';
import { AppError } from '../platform/errors.ts';
import {
  computeExpected,
  countDifferences,
  lockRollups,
  replaceRollups,
  type RollupTable,
} from './rollups.queries.ts';
import { listPartitions } from './usage.queries.ts';

const TABLES: RollupTable[] = [
  'api_key_usage_hourly',
  'api_key_usage_daily',
  'api_key_usage_routes_daily',
];
export type RebuildReport = { from: string; to: string; differences: Record<RollupTable, number> };

/** The first month still present in the raw events: rollups before it cannot be recomputed. */
async function oldestRawMonth(db: Database): Promise<string | null> {
  const names = (await listPartitions(db)).map((p) => p.name.slice(-7).replace('_', '-'));
  return names.sort()[0] ?? null;
}

/**
 * `keytrail rollups rebuild --from D1 --to D2` (UTC days, both included): recomputes the hourly,
 * daily and route rollups of those days from raw events, reports how many rows differed from
 * the incremental ones, and replaces them, in one transaction that holds ingest back meanwhile.
 * Hourly rollups are rebuilt only within their retention.
 */
export async function rebuildRollups(
  db: Database,
  fromDay: string,
  toDay: string,
  hourlyRetentionDays = 35,
  routesPerKeyDay = DEFAULT_ROUTES_PER_KEY_DAY,
): Promise<RebuildReport> {
  const from = new Date(`${fromDay}T00:00:00Z`);
  const to = new Date(new Date(`${toDay}T00:00:00Z`).getTime() + 86_400_000);
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || from >= to) {
    throw new AppError('validation_failed', {
      detail: '--from and --to must be days (YYYY-MM-DD), from ≤ to',
    });
  }
  const oldest = await oldestRawMonth(db);
  if (oldest === null || fromDay.slice(0, 7) < oldest) {
    throw new AppError('unprocessable', {
      detail: `raw events start at ${oldest ?? '(none)'}: rollups before that would be emptied, not rebuilt`,
    });
  }
  // Hourly rows older than their retention are gone on purpose: never recreate them.
  const hourlyFrom = new Date(
    Math.max(from.getTime(), Date.now() - hourlyRetentionDays * 86_400_000),
  );
  // Rounded up: the boundary hour may already be pruned (prune deletes hour < now − retention).
  const hourStart = new Date(Math.ceil(hourlyFrom.getTime() / 3_600_000) * 3_600_000);
  return db.transaction().execute(async (trx) => {
    await lockRollups(trx);
    await computeExpected(trx, from, to, hourStart, routesPerKeyDay);
    const differences = {} as Record<RollupTable, number>;
    for (const table of TABLES) {
      const start = table === 'api_key_usage_hourly' ? hourStart : from;
      differences[table] = await countDifferences(trx, table, start, to);
      await replaceRollups(trx, table, start, to);
    }
    return { from: fromDay, to: toDay, differences };
  });
}
