/**
 * Columnar history (SPEC §12, docs/adr/0016-columnar-history.md): on Citus, a month's partition
 * that is closed (it ended more than the 7-day report window ago, plus a day) is rebuilt in
 * Citus's `columnar` storage and swapped in. The daily maintenance and `keytrail partitions
 * compress` run it, newest closed month first.
 *
 * Per partition: the columnar copy is built beside it while the month stays open, nothing of
 * the events table locked; then the month is closed to new rows (a NOT VALID check: a replayed
 * job of that month fails and is retried), the rows stored meanwhile are copied too, and one
 * short transaction detaches the row partition, attaches the copy and drops the original. The
 * close and the swap wait at most `swapLockTimeoutMs` for their locks (on Citus's workers too)
 * and are tried again a few times; a month that cannot be swapped is opened again and its copy
 * dropped, for the next run. A run holds the maintenance lock (prune's): copies and closes left
 * by a run that stopped half-way are undone at the next run's start.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { onCitus, type Database } from '../platform/db.ts';
import {
  buildColumnarCopy,
  closePartition,
  columnarAvailable,
  copyLateRows,
  dropRebuild,
  eventsDistributed,
  partitionBound,
  reopenPartition,
  swapIn,
} from './compress.queries.ts';
import { CLOSED_AFTER_MS } from './usage.service.ts';
import {
  dropTable,
  listDetachedMonthTables,
  PARENT,
  partitionStats,
  withPruneLock,
} from './usage.queries.ts';

const SWAP_LOCK_TIMEOUT_MS = 5_000;
/** Months keytrail made (`api_key_usage_events_YYYY_MM`): others are left as they are. */
const MONTH_NAME = new RegExp(`^${PARENT}_[0-9]{4}_[0-9]{2}$`);
const SWAP_ATTEMPTS = 3;

export type CompressReport = {
  /** Compressed (dry run: would be), newest first, with sizes on disk (table, indexes). */
  partitions: { name: string; bytesBefore: number; bytesAfter: number | null; seconds: number }[];
  /** Partitions left in row storage this run, with why. */
  failed: { name: string; error: string }[];
  dryRun: boolean;
  /** Another maintenance (prune, compress) held the lock: nothing was done. */
  skipped: boolean;
};

export class ColumnarUnavailable extends Error {
  override name = 'ColumnarUnavailable';
  constructor() {
    super(
      'columnar storage needs Citus (its `columnar` access method); this database has none. ' +
        'See docs/scaling.md.',
    );
  }
}

/** A lock wait past its timeout, or a deadlock (Citus's distributed one included). */
const contended = (error: unknown): boolean => {
  const { code, message } = error as { code?: string; message?: string };
  return (
    code === '55P03' ||
    code === '40P01' ||
    String(message).includes('involved in a distributed deadlock')
  );
};

/**
 * Compresses the closed row partitions, newest first, holding the maintenance lock prune holds
 * (one prune or compress at a time across all processes). With `maxSeconds`, no partition is
 * started past it (the daily job stays within its time; the rest waits for the next day).
 */
export async function compressPartitions(
  db: Database,
  o: {
    now: Date;
    dryRun: boolean;
    swapLockTimeoutMs?: number;
    swapAttempts?: number;
    maxSeconds?: number;
  },
): Promise<CompressReport> {
  const swap = {
    lockTimeoutMs: o.swapLockTimeoutMs ?? SWAP_LOCK_TIMEOUT_MS,
    attempts: o.swapAttempts ?? SWAP_ATTEMPTS,
  };
  if (!(await columnarAvailable(db))) throw new ColumnarUnavailable();
  const report: CompressReport = { partitions: [], failed: [], dryRun: o.dryRun, skipped: false };
  const done = await withPruneLock(db, async (conn) => {
    const runStarted = performance.now();
    // Distributed like the events, or local like them (Citus installed after the migration).
    const citus = (await onCitus(conn)) && (await eventsDistributed(conn));
    const stats = await partitionStats(conn);
    if (!o.dryRun) {
      // No other run holds the lock: what one left half-way is undone (a closed month is
      // compressed again below, or opened if it is not due).
      for (const name of await listDetachedMonthTables(conn, '_c')) await dropTable(conn, name);
      for (const p of stats.filter((s) => s.closed && s.storage === 'row')) {
        await reopenPartition(conn, p.name, swap.lockTimeoutMs).catch((error: unknown) =>
          report.failed.push({
            name: p.name,
            error: `still closed to new rows, a run's leftover: ${(error as Error).message}`,
          }),
        );
      }
    }
    const due = stats
      .filter(
        (p) =>
          MONTH_NAME.test(p.name) &&
          p.storage === 'row' &&
          !p.detachPending &&
          p.from !== null &&
          p.to !== null &&
          p.to.getTime() + CLOSED_AFTER_MS <= o.now.getTime(),
      )
      .sort((a, b) => (b.from?.getTime() ?? 0) - (a.from?.getTime() ?? 0));
    for (const p of due) {
      if (o.maxSeconds !== undefined && (performance.now() - runStarted) / 1000 > o.maxSeconds)
        break;
      const started = performance.now();
      const entry = { name: p.name, bytesBefore: p.bytes, bytesAfter: null as number | null };
      if (!o.dryRun) {
        try {
          const range = { from: p.from as Date, to: p.to as Date };
          await compressOne(conn, p.name, range, { citus, ...swap });
          const after = (await partitionStats(conn)).find((s) => s.name === p.name);
          entry.bytesAfter = after?.bytes ?? null;
        } catch (error) {
          report.failed.push({ name: p.name, error: String((error as Error).message) });
          continue;
        }
      }
      report.partitions.push({ ...entry, seconds: (performance.now() - started) / 1000 });
    }
    return report;
  });
  return done ?? { ...report, skipped: true };
}

async function compressOne(
  db: Database,
  name: string,
  range: { from: Date; to: Date },
  o: { citus: boolean; lockTimeoutMs: number; attempts: number },
): Promise<void> {
  /** A step that waits on a lock, tried again after a lock timeout or a deadlock. */
  const retried = async (step: () => Promise<void>) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await step();
      } catch (error) {
        if (!contended(error) || attempt >= o.attempts) throw error;
        await sleep(attempt * Math.min(1000, o.lockTimeoutMs));
      }
    }
  };
  try {
    const bound = await partitionBound(db, name);
    if (!bound) throw new Error(`${name}: no partition bound`);
    await buildColumnarCopy(db, name, range, o.citus);
    await retried(() => closePartition(db, name, o.lockTimeoutMs));
    await copyLateRows(db, name);
    await retried(() => swapIn(db, name, bound, o.lockTimeoutMs));
  } catch (error) {
    // Undone for the next run. A month that cannot be opened again (its readers outlast every
    // try) stays closed to new rows until the next run's start opens it: said in the error.
    await dropRebuild(db, name).catch(() => undefined);
    try {
      await retried(() => reopenPartition(db, name, o.lockTimeoutMs));
    } catch {
      throw new Error(
        `${(error as Error).message}; and the month is still closed to new rows (the next run opens it)`,
        { cause: error },
      );
    }
    throw error;
  }
}
