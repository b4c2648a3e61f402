import type { Database } from '../platform/db.ts';
import {
  createMonthPartition,
  listPartitions,
  partitionName,
  partitionStats,
  type PartitionStats,
} from './usage.queries.ts';

export type EnsureReport = { created: string[]; existing: string[] };

/**
 * Creates the partitions of the current month and the `monthsAhead` next ones (idempotent).
 * Reports which it created and which existed; a partition another process creates meanwhile
 * (IF NOT EXISTS) may be reported as created by both.
 */
export async function ensurePartitionsAhead(
  db: Database,
  now: Date,
  monthsAhead = 2,
): Promise<EnsureReport> {
  const present = new Set((await listPartitions(db)).map((p) => p.name));
  const report: EnsureReport = { created: [], existing: [] };
  for (let i = 0; i <= monthsAhead; i++) {
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + i, 1));
    const [year, month] = [d.getUTCFullYear(), d.getUTCMonth() + 1];
    const name = partitionName(year, month);
    if (present.has(name)) {
      report.existing.push(name);
    } else {
      await createMonthPartition(db, year, month);
      report.created.push(name);
    }
  }
  return report;
}

export type { PartitionStats };

/** The event partitions, oldest first, with their range, approximate row count and size. */
export function describePartitions(db: Database): Promise<PartitionStats[]> {
  return partitionStats(db);
}
