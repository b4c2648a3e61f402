import { Counter, Gauge, type Registry } from 'prom-client';
import type { Limits } from './limits-sync.ts';

/**
 * The limits' metrics, read from the limiter's own counters on each scrape (no key id in any
 * label): decisions by outcome, the claim statements and their failures, waits for credit, the
 * age of the last good sync, and whether the instance decides on its own (degraded).
 */
export function registerLimitMetrics(registry: Registry, limits: Limits): void {
  const { stats } = limits.rate;
  const { decisions } = limits.limiter;
  new Counter({
    name: 'keytrail_limit_decisions_total',
    help: 'Requests of keys with limits, by decision: admitted, rate_limited, quota_exceeded, ip_denied, unavailable (503: claims failing)',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ outcome: 'admitted' }, decisions.admitted);
      this.inc({ outcome: 'rate_limited' }, decisions.rateLimited);
      this.inc({ outcome: 'quota_exceeded' }, decisions.quotaExceeded);
      this.inc({ outcome: 'ip_denied' }, limits.decisions.ipDenied);
      this.inc({ outcome: 'unavailable' }, decisions.unavailable);
    },
  });
  const quota = limits.quota.stats;
  new Counter({
    name: 'keytrail_quota_takes_total',
    help: 'Quota take statements (credit moved from a pool to this instance), by result',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ result: 'ok' }, quota.takes - quota.takeFailures);
      this.inc({ result: 'failed' }, quota.takeFailures);
    },
  });
  new Counter({
    name: 'keytrail_quota_credit_taken_total',
    help: 'Quota credit this instance took from pools (spent, given back, or stranded by a crash)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(quota.taken);
    },
  });
  new Counter({
    name: 'keytrail_quota_fail_open_total',
    help: 'Requests admitted without quota credit while takes failed (KEYTRAIL_QUOTA_FAIL_OPEN)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(quota.failOpen);
    },
  });
  new Counter({
    name: 'keytrail_limits_claims_total',
    help: 'Rate-limit claim statements (syncs and waits), by result',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ result: 'ok' }, stats.statements - stats.failures);
      this.inc({ result: 'failed' }, stats.failures);
    },
  });
  new Counter({
    name: 'keytrail_limits_credit_waits_total',
    help: 'Requests that waited for a claim: no credit in hand for their window',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(stats.waits);
    },
  });
  new Gauge({
    name: 'keytrail_limits_sync_lag_seconds',
    help: 'Seconds since the last claim statement that succeeded (0 before limits are used)',
    registers: [registry],
    collect() {
      this.set(stats.lastSuccessAt > 0 ? (Date.now() - stats.lastSuccessAt) / 1000 : 0);
    },
  });
  new Gauge({
    name: 'keytrail_limits_degraded',
    help: '1 while claims fail: each instance admits its share of each window on its own',
    registers: [registry],
    collect() {
      this.set(stats.degraded ? 1 : 0);
    },
  });
  new Gauge({
    name: 'keytrail_limits_subjects',
    help: 'Rate-limit and quota states this instance tracks (per key with its rotations)',
    registers: [registry],
    collect() {
      this.set(limits.rate.size + limits.quota.size);
    },
  });
}
