/**
 * Runs one instance's rate limiter: its claims go through a pool of their own (a short
 * deadline, so a stalled Postgres turns into degraded mode, not into waiting requests), a sync
 * every `syncMs`, the pruning of past windows, and the credit given back on a graceful stop.
 */
import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import { surelyNotApplied } from '../platform/db.ts';
import { detachedFromRequest } from '../platform/db-scope.ts';
import { newId } from '../platform/ids.ts';
import type { Logger } from '../platform/logger.ts';
import { createRateLimiter, type RateLimiter } from './rate-limiter.ts';
import type { ClaimItem } from './rate-state.ts';
import { claimCredit, pruneClaims, releaseCredit } from './limits.queries.ts';
import { createQuotaCredit, NotApplied, type QuotaCredit } from './quota-credit.ts';
import { debitQuota, reportQuota, returnQuota, takeQuota } from './quota.queries.ts';
import { createLimiter, type Limiter } from './limiter.ts';

const PRUNE_EVERY_MS = 10_000;
const PRUNE_BATCH = 5_000;

export type Limits = {
  rate: RateLimiter;
  quota: QuotaCredit;
  /** Rate limits and quota in one decision. */
  limiter: Limiter;
  /** Decisions made outside the rate limiter, for the metrics. */
  decisions: { ipDenied: number };
  instanceId: string;
  /** Syncs until closed; starts by itself once a key with rate limits is first seen. */
  start(): void;
  /** Stops syncing and gives back the credit this instance holds. */
  close(): Promise<void>;
};

export function createLimits(deps: {
  db: Kysely<DB>;
  logger: Logger;
  syncMs: number;
  /** Quotas: admit (and debit later) rather than refuse while takes fail. */
  quotaFailOpen: boolean;
  /**
   * Quotas this instance reported spending on and sees under 10 %: the `key.quota_low` check,
   * as the ingest does it (the report can come after the last use's ingest).
   */
  onQuotaLow?: (subjects: readonly string[]) => Promise<unknown>;
}): Limits {
  const { db, logger, syncMs } = deps;
  const instanceId = newId();
  // An instance counts while its heartbeat (every sync) is this fresh: three syncs, at least 2 s.
  const liveMs = Math.max(2_000, 3 * syncMs);
  let failing = false;
  const claim = async (items: readonly ClaimItem[]) => {
    try {
      // Shared by every request of a tick: no one request's disconnect may cancel it.
      const result = await detachedFromRequest(() => claimCredit(db, instanceId, items, liveMs));
      if (failing) logger.info('rate limit claims work again; limits are shared again');
      failing = false;
      return result;
    } catch (error) {
      if (!failing) {
        logger.warn({ err: error }, 'rate limit claims failed; each instance admits its share');
      }
      failing = true;
      throw error;
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const rate = createRateLimiter({ claim, syncMs, onUse: () => start() });
  const quota = createQuotaCredit({
    now: rate.now,
    failOpen: deps.quotaFailOpen,
    store: {
      take: (items) => {
        start();
        return detachedFromRequest(() => takeQuota(db, instanceId, items));
      },
      report: (items) => detachedFromRequest(() => reportQuota(db, instanceId, items)),
      low: async (subjects) => {
        await detachedFromRequest(() => deps.onQuotaLow?.(subjects))?.catch((error: unknown) => {
          logger.warn({ err: error }, 'the quota_low check after a report failed');
        });
      },
      giveBack: async (items) => {
        try {
          await detachedFromRequest(() => returnQuota(db, instanceId, items));
        } catch (error) {
          logger.warn({ err: error }, 'giving quota credit back failed');
          throw surelyNotApplied(error)
            ? new NotApplied('not given back', { cause: error })
            : error;
        }
      },
      debit: (items) => detachedFromRequest(() => debitQuota(db, items)),
    },
  });
  const limiter = createLimiter(rate, quota);
  let running: Promise<void> | null = null;
  let lastPrune = Date.now();

  const tick = () => {
    if (running) return;
    running = (async () => {
      await rate.sync();
      await quota.sync();
      if (Date.now() - lastPrune < PRUNE_EVERY_MS) return;
      lastPrune = Date.now();
      await pruneClaims(db, PRUNE_BATCH).catch((error: unknown) => {
        logger.warn({ err: error }, 'pruning past rate-limit windows failed');
      });
    })().finally(() => {
      running = null;
    });
  };

  let closed = false;
  function start(): void {
    if (timer || closed) return;
    timer = setInterval(tick, syncMs);
    timer.unref();
  }

  return {
    rate,
    quota,
    limiter,
    decisions: { ipDenied: 0 },
    instanceId,
    start,
    async close() {
      closed = true;
      clearInterval(timer);
      timer = undefined;
      await running;
      await releaseCredit(db, instanceId, await rate.releaseAll()).catch((error: unknown) => {
        logger.warn({ err: error }, 'could not give back rate-limit credit on stop');
      });
      await quota.releaseAll().catch((error: unknown) => {
        logger.warn({ err: error }, 'could not give back quota credit on stop');
      });
    },
  };
}
