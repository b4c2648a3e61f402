/**
 * Columnar history (SPEC §12, docs/adr/0016): on Citus, a month's partition that is closed (it
 * ended more than the 7-day report window ago, plus a day) is rebuilt in Citus's `columnar`
 * storage and swapped in. The daily maintenance and `keytrail partitions compress` run it.
 *
 * Per partition: it is closed to new rows (a replayed job of its month fails and is retried),
 * the columnar copy is built beside it with nothing on the events table locked, then one short
 * transaction detaches the row partition, attaches the copy and drops the original. That swap
 * waits at most SWAP_LOCK_TIMEOUT_MS for the events table and is tried again a few times (a
 * lock wait or a deadlock with a running ingest); a partition that cannot be swapped is opened
 * again and its copy dropped, for the next run.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { onCitus, type Database } from '../platform/db.ts';
import {
  buildColumnarCopy,
  closePartition,
  columnarAvailable,
  dropRebuild,
  partitionBound,
  reopenPartition,
  swapIn,
} from './compress.queries.ts';
import { REPORT_WINDOW } from './usage.service.ts';
import { partitionStats, releasePruneLock, tryPruneLock } from './usage.queries.ts';

const DAY_MS = 86_400_000;
/** A month is closed this long after its end: past the report window, with a day to spare. */
export const CLOSED_AFTER_MS = REPORT_WINDOW.pastMs + DAY_MS;
const SWAP_LOCK_TIMEOUT_MS = 5_000;
const SWAP_ATTEMPTS = 3;

export type CompressReport = {
  /** Compressed (dry run: would be), oldest first, with sizes on disk (table, indexes). */
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
 * Compresses every closed row partition (oldest first), holding the maintenance lock prune
 * holds: one prune or compress at a time across all processes.
 */
export async function compressPartitions(
  db: Database,
  o: { now: Date; dryRun: boolean; swapLockTimeoutMs?: number; swapAttempts?: number },
): Promise<CompressReport> {
  const swap = {
    lockTimeoutMs: o.swapLockTimeoutMs ?? SWAP_LOCK_TIMEOUT_MS,
    attempts: o.swapAttempts ?? SWAP_ATTEMPTS,
  };
  if (!(await columnarAvailable(db))) throw new ColumnarUnavailable();
  return db.connection().execute(async (conn) => {
    const report: CompressReport = { partitions: [], failed: [], dryRun: o.dryRun, skipped: false };
    if (!(await tryPruneLock(conn))) return { ...report, skipped: true };
    try {
      const citus = await onCitus(db);
      const closed = (await partitionStats(conn)).filter(
        (p) =>
          p.storage === 'row' &&
          !p.detachPending &&
          p.from !== null &&
          p.to !== null &&
          p.to.getTime() + CLOSED_AFTER_MS <= o.now.getTime(),
      );
      for (const p of closed) {
        const started = performance.now();
        const entry = { name: p.name, bytesBefore: p.bytes, bytesAfter: null as number | null };
        if (!o.dryRun) {
          try {
            const range = { from: p.from as Date, to: p.to as Date };
            await compressOne(conn, p.name, range, { citus, ...swap });
          } catch (error) {
            report.failed.push({ name: p.name, error: String((error as Error).message) });
            continue;
          }
          const after = (await partitionStats(conn)).find((s) => s.name === p.name);
          entry.bytesAfter = after?.bytes ?? null;
        }
        report.partitions.push({ ...entry, seconds: (performance.now() - started) / 1000 });
      }
      return report;
    } finally {
      await releasePruneLock(conn);
    }
  });
}

async function compressOne(
  db: Database,
  name: string,
  range: { from: Date; to: Date },
  o: { citus: boolean; lockTimeoutMs: number; attempts: number },
): Promise<void> {
  const bound = await partitionBound(db, name);
  if (!bound) throw new Error(`${name}: no partition bound`);
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
  // A copy left by a run that stopped half-way is dropped: the partition is copied again.
  await dropRebuild(db, name);
  try {
    await retried(() => closePartition(db, name, o.lockTimeoutMs));
    await buildColumnarCopy(db, name, range, o.citus);
    await retried(() => swapIn(db, name, bound, o.lockTimeoutMs));
  } catch (error) {
    // Undone for the next run; a failure here (the connection gone) is the next run's to mend.
    await dropRebuild(db, name).catch(() => undefined);
    await reopenPartition(db, name).catch(() => undefined);
    throw error;
  }
}
