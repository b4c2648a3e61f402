/**
 * Dead-lettered ingest jobs: counted for /metrics and moved back to the ingest queue by
 * `keytrail ingest replay-dead`. Only usage.ingest feeds usage.ingest.dead.
 */
import type { PgBoss } from '../platform/queue.ts';
import { USAGE_DEAD_LETTER_QUEUE, USAGE_INGEST_QUEUE } from './usage.jobs.ts';

/** Jobs counted exactly; one more is read, so a count above it means "more than this". */
export const DEAD_LETTER_COUNT_LIMIT = 10_000;

const toIngest = { destination: USAGE_INGEST_QUEUE };

/**
 * Dead-lettered ingest jobs waiting for a replay (dead-lettered before `before`, when given),
 * counted up to DEAD_LETTER_COUNT_LIMIT + 1: a result above the limit means more than it.
 */
export async function countDeadIngestJobs(boss: PgBoss, before?: Date): Promise<number> {
  const preview = await boss.previewRedrive(USAGE_DEAD_LETTER_QUEUE, {
    ...toIngest,
    limit: DEAD_LETTER_COUNT_LIMIT + 1,
    ...(before && { createdBefore: before }),
  });
  return preview.total;
}

/**
 * Moves the jobs dead-lettered before `before` (a time of the database's clock, which stamps
 * created_on: databaseNow) back to usage.ingest, oldest first, `batch` at a time; returns how many. Each move is one pg-boss statement (the job leaves the dead-letter
 * queue and enters usage.ingest together, with a fresh retry count), so the move itself neither
 * loses nor duplicates a job. Ingesting a replayed job again is safe: ingest skips event ids
 * already stored and counts only the events it stored. Jobs that fail again during the replay
 * come back dead-lettered after `before` and are not swept in a second time.
 */
export async function replayDeadIngestJobs(
  boss: PgBoss,
  before: Date,
  batch = 1_000,
): Promise<number> {
  let moved = 0;
  for (;;) {
    const n = await boss.redrive(USAGE_DEAD_LETTER_QUEUE, {
      ...toIngest,
      createdBefore: before,
      limit: batch,
    });
    moved += n;
    if (n < batch) return moved;
  }
}
