import type { Database } from '../platform/db.ts';
import { recordAuditForAllOrgs } from '../audit/audit.service.ts';
import { auditExpiredKeys } from '../keys/keys.expiry.ts';
import {
  deleteRollupsBefore,
  detachAndDropPartition,
  dropTable,
  listDetachedMonthTables,
  listPartitions,
  partitionMonth,
  raisePruneWatermark,
  withPruneLock,
} from './usage.queries.ts';

const DAY_MS = 86_400_000;

export type PruneOptions = {
  now: Date;
  retentionDays: number;
  hourlyRetentionDays: number;
  rollupRetentionDays: number;
  dryRun: boolean;
};

export type PruneReport = {
  /** Per dropped partition: detach, drop, and the whole step including its audit entries. */
  partitions: { name: string; seconds: number; detachSeconds: number; dropSeconds: number }[];
  hourlyRowsDeleted: number;
  dailyRowsDeleted: number;
  /** Keys past expires_at whose `key.expired` audit entry this run wrote (dry run: would write). */
  expiredKeysMarked: number;
  dryRun: boolean;
  /** Another prune held the lock (the daily job of another worker, the CLI): nothing was done. */
  skipped: boolean;
};

/**
 * Retention: drops whole monthly partitions that end before now − retention (DETACH ...
 * CONCURRENTLY, then DROP: ingest into current months never waits on it), deletes hourly and
 * daily rollups past their retentions, and audits each dropped partition in every org; audits
 * keys that expired since the last run (`key.expired`, once per expiry). Lifetime totals are kept.
 */
export async function prune(db: Database, o: PruneOptions): Promise<PruneReport> {
  // Every statement on one connection, which holds the advisory lock for the whole run: two
  // prunes (each worker's start-up, the daily job, the CLI) would detach the same partitions.
  return (
    (await withPruneLock(db, (conn) => pruneLocked(conn, o))) ?? {
      partitions: [],
      hourlyRowsDeleted: 0,
      dailyRowsDeleted: 0,
      expiredKeysMarked: 0,
      dryRun: o.dryRun,
      skipped: true,
    }
  );
}

async function pruneLocked(db: Database, o: PruneOptions): Promise<PruneReport> {
  const cutoff = new Date(o.now.getTime() - o.retentionDays * DAY_MS);
  const past = (name: string) => {
    const month = partitionMonth(name);
    return month !== null && Date.UTC(month.year, month.month, 1) <= cutoff.getTime();
  };
  const expired = [
    ...(await listPartitions(db)).map((p) => ({ ...p, attached: true })),
    // Detached by an earlier prune that failed before its DROP: only the drop is left to do.
    ...(await listDetachedMonthTables(db)).map((name) => ({
      name,
      detachPending: false,
      attached: false,
    })),
  ]
    .filter((p) => past(p.name))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  const report: PruneReport = {
    partitions: [],
    hourlyRowsDeleted: 0,
    dailyRowsDeleted: 0,
    // First: a partition that cannot be dropped must not hold back the expiry audit.
    expiredKeysMarked: await auditExpiredKeys(db, { now: o.now, dryRun: o.dryRun }),
    dryRun: o.dryRun,
    skipped: false,
  };
  for (const p of expired) {
    const started = performance.now();
    let timings = { detachSeconds: 0, dropSeconds: 0 };
    if (!o.dryRun) {
      timings = p.attached
        ? await detachAndDropPartition(db, p.name, p.detachPending)
        : { detachSeconds: 0, dropSeconds: await dropTable(db, p.name) };
      const month = partitionMonth(p.name);
      if (month) await raisePruneWatermark(db, new Date(Date.UTC(month.year, month.month, 1)));
      await recordAuditForAllOrgs(db, {
        at: o.now,
        action: 'partition.pruned',
        target: { type: 'partition', id: null },
        details: { partition: p.name, retention_days: o.retentionDays },
      });
    }
    report.partitions.push({
      name: p.name,
      seconds: (performance.now() - started) / 1000,
      ...timings,
    });
  }
  if (!o.dryRun) {
    const deleted = await deleteRollupsBefore(db, {
      hourlyBefore: new Date(o.now.getTime() - o.hourlyRetentionDays * DAY_MS),
      dailyBefore: new Date(o.now.getTime() - o.rollupRetentionDays * DAY_MS),
    });
    report.hourlyRowsDeleted = deleted.hourly;
    report.dailyRowsDeleted = deleted.daily;
  }
  return report;
}
