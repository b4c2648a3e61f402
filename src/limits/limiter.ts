/**
 * One decision over a key's rate limits and quota (SPEC §11: rate limits, then quota), charging
 * nothing unless both admit: a refused request spends nothing.
 */
import type { KeyLimits } from './key-limits.ts';
import {
  QUOTA_NEEDS_CREDIT,
  QUOTA_REFUSED,
  QUOTA_UNAVAILABLE,
  type QuotaCredit,
} from './quota-credit.ts';
import { ADMITTED, NEEDS_CREDIT, UNAVAILABLE, type RateLimiter } from './rate-limiter.ts';

/** The quota cannot pay the cost (a rate policy's refusal is its index, ≥ 0). */
export const QUOTA_EXCEEDED = -4;

/** Waits for credit one request may go through before it is refused for want of it. */
const MAX_WAITS = 8;

export function createLimiter(rate: RateLimiter, quota: QuotaCredit) {
  const decisions = { admitted: 0, rateLimited: 0, quotaExceeded: 0, unavailable: 0 };

  function finish(done: (verdict: number) => void, verdict: number): void {
    if (verdict === ADMITTED) decisions.admitted += 1;
    else if (verdict === QUOTA_EXCEEDED) decisions.quotaExceeded += 1;
    else if (verdict === UNAVAILABLE) decisions.unavailable += 1;
    else decisions.rateLimited += 1;
    try {
      done(verdict);
    } catch {
      // The caller's own failure (a response already gone); nothing of the limiter's.
    }
  }

  /**
   * Decides, waiting for credit when it must, then `done(ADMITTED | UNAVAILABLE |
   * QUOTA_EXCEEDED | index of a refusing rate policy)`. Synchronous when no wait is needed.
   */
  function decideThen(
    limits: KeyLimits,
    cost: number,
    done: (verdict: number) => void,
    attempt = 0,
  ): void {
    const { subject } = limits;
    const r = limits.rate ? rate.check(subject, limits.rate) : ADMITTED;
    if (r >= 0) return finish(done, r);
    const q = limits.quota ? quota.check(subject, limits.quota, cost) : ADMITTED;
    if (q === QUOTA_REFUSED) return finish(done, QUOTA_EXCEEDED);
    if (q === QUOTA_UNAVAILABLE) return finish(done, UNAVAILABLE);
    const rateWaits = r === NEEDS_CREDIT;
    const quotaWaits = q === QUOTA_NEEDS_CREDIT;
    if (!rateWaits && !quotaWaits) {
      if (limits.rate) rate.charge(subject);
      quota.charge(subject, cost);
      return finish(done, ADMITTED);
    }
    if (attempt > 0 && ((rateWaits && rate.unsure) || (quotaWaits && quota.failing))) {
      return finish(done, UNAVAILABLE);
    }
    // Outrun for the credit that came MAX_WAITS times: busy, not spent (503, retry in a second).
    if (attempt >= MAX_WAITS) return finish(done, UNAVAILABLE);
    const waits: Promise<unknown>[] = [];
    if (rateWaits && limits.rate) waits.push(rate.credit(subject, limits.rate));
    if (quotaWaits && limits.quota) waits.push(quota.credit(subject, limits.quota, cost));
    void Promise.all(waits).then(() => decideThen(limits, cost, done, attempt + 1));
  }

  return { decideThen, decisions, rate, quota };
}

export type Limiter = ReturnType<typeof createLimiter>;
