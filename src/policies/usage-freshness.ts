/**
 * "Usage is complete up to the run's start", per org: a dormant-key run must not judge a key on
 * usage still in the pipeline, and one org's backlog (a tenant's flood) must not hold back the
 * others. Each org waits only for the usage jobs queued before the run that may carry its events.
 */
import type { Database } from '../platform/db.ts';
import * as q from './dormant.queries.ts';

/** Time for a flushed batch's job to be inserted, past the flush interval. */
const SEND_MARGIN_MS = 500;
const POLL_MS = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type FreshnessDeps = { db: Database; flushIntervalMs: number; timeoutMs: number };

/**
 * Calls `fresh(org)` for each org as soon as its usage up to now is ingested: it first waits one
 * flush interval (an event reaches the queue within it), reads the jobs queued until then once,
 * and then polls only those jobs. Returns the orgs still behind at the timeout, and why.
 */
export async function whenUsageComplete(
  deps: FreshnessDeps,
  orgIds: readonly string[],
  fresh: (orgId: string) => Promise<void>,
): Promise<{ behind: string[]; reason: string | null }> {
  const start = await q.databaseNow(deps.db);
  const cutoff = new Date(start.getTime() + deps.flushIntervalMs + SEND_MARGIN_MS);
  await sleep(deps.flushIntervalMs + SEND_MARGIN_MS);
  const jobs = await q.pendingUsageJobs(deps.db, cutoff);
  const unlisted = jobs.filter((j) => j.orgs === null).map((j) => j.id);
  const byOrg = new Map<string, string[]>();
  for (const job of jobs) {
    for (const org of job.orgs ?? []) byOrg.set(org, [...(byOrg.get(org) ?? []), job.id]);
  }
  let pending = new Set(jobs.map((j) => j.id));
  const deadline = Date.now() + deps.timeoutMs;
  let waiting = [...orgIds];
  for (;;) {
    const behind: string[] = [];
    for (const orgId of waiting) {
      const waitsFor = [...unlisted, ...(byOrg.get(orgId) ?? [])];
      if (waitsFor.some((id) => pending.has(id))) behind.push(orgId);
      else await fresh(orgId);
    }
    waiting = behind;
    if (waiting.length === 0) return { behind: [], reason: null };
    if (Date.now() >= deadline) {
      return {
        behind: waiting,
        reason: `usage events queued before ${cutoff.toISOString()} are not ingested yet`,
      };
    }
    await sleep(POLL_MS);
    pending = await q.stillPending(deps.db, [...pending]);
  }
}
