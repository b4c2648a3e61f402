/**
 * The dead-letter gauge's value, refreshed in the background: a /metrics scrape reads the last
 * count and never waits for Postgres (a hung or locked database would otherwise time the whole
 * scrape out, losing every metric when they matter most). One refresh runs at a time, bounded in
 * rows and time; a failed one keeps the previous count, and the time of the last successful one
 * is exported so a stale count shows.
 */
import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { Logger } from '../platform/logger.ts';
import { countWaitingJobs } from './dead-letters.queries.ts';
import { DEAD_LETTER_COUNT_LIMIT } from './usage.dead-letters.ts';
import { USAGE_DEAD_LETTER_QUEUE } from './usage.jobs.ts';

export type DeadLetterReading = {
  /** Waiting dead-lettered ingest jobs, up to DEAD_LETTER_COUNT_LIMIT + 1 ("more than"). */
  jobs: number;
  /** Of those, the jobs pg-boss deletes within EXPIRING_DAYS. */
  expiring: number;
  /** Epoch milliseconds of the refresh that read them. */
  checkedAtMs: number;
};

export type DeadLetterGauge = {
  /** The last successful reading; undefined before the first. */
  read(): DeadLetterReading | undefined;
  /** Refreshes now, or joins the refresh already running. Never rejects. */
  refresh(): Promise<void>;
  stop(): Promise<void>;
};

const EXPIRING_DAYS = 7;
const REFRESH_MS = 30_000;
const STATEMENT_TIMEOUT_MS = 2_000;
const STOP_WAIT_MS = 5_000;

export function startDeadLetterGauge(deps: {
  db: Kysely<DB>;
  logger: Logger;
  now?: () => number;
  intervalMs?: number;
}): DeadLetterGauge {
  const { db, logger } = deps;
  const now = deps.now ?? Date.now;
  let reading: DeadLetterReading | undefined;
  let running: Promise<void> | undefined;
  let warnedExpiring = false;

  async function once(): Promise<void> {
    try {
      const counted = await countWaitingJobs(db, {
        queue: USAGE_DEAD_LETTER_QUEUE,
        limit: DEAD_LETTER_COUNT_LIMIT,
        expiringDays: EXPIRING_DAYS,
        timeoutMs: STATEMENT_TIMEOUT_MS,
      });
      reading = { ...counted, checkedAtMs: now() };
      // pg-boss deletes them without a word: say so once, and again after they were dealt with.
      if (counted.expiring > 0 && !warnedExpiring) {
        logger.warn(
          { jobs: counted.jobs, expiring: counted.expiring, days: EXPIRING_DAYS },
          'dead-lettered usage jobs will be deleted by pg-boss soon; run keytrail ingest replay-dead',
        );
      }
      warnedExpiring = counted.expiring > 0;
    } catch (error) {
      logger.warn(
        { err: String(error) },
        'dead-letter count failed; the gauge keeps its last value',
      );
    }
  }

  const refresh = (): Promise<void> => {
    running ??= once().finally(() => {
      running = undefined;
    });
    return running;
  };
  void refresh();
  const timer = setInterval(() => void refresh(), deps.intervalMs ?? REFRESH_MS);
  timer.unref();
  return {
    read: () => reading,
    refresh,
    async stop() {
      clearInterval(timer);
      // A refresh is bounded by its statement deadline, unless Postgres stopped answering at all:
      // stopping the worker must not wait for that.
      let wait: NodeJS.Timeout | undefined;
      const cap = new Promise<void>((resolve) => (wait = setTimeout(resolve, STOP_WAIT_MS)));
      await Promise.race([running, cap]);
      clearTimeout(wait);
    },
  };
}
