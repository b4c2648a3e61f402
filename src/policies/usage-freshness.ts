/**
 * "Usage is complete up to the run's start", per org: a dormant-key run must not judge a key on
 * usage still in the pipeline, and one org's backlog (a tenant's flood) must not hold back the
 * others. Each org waits only for the usage jobs queued before the run that may carry its events.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { databaseNow, type Database } from '../platform/db.ts';
import * as q from './dormant.queries.ts';

/** Time for a flushed batch's job to be inserted, past the flush interval. */
const SEND_MARGIN_MS = 500;
const POLL_MS = 200;

export type FreshnessDeps = { db: Database; flushIntervalMs: number; timeoutMs: number };

export type Skipped = { orgId: string; reason: string };

const DEAD_LETTERED =
  'usage events of the org wait in dead-lettered jobs (keytrail ingest replay-dead)';

/**
 * Calls `fresh(org)` for each org as soon as its usage up to now is ingested: it first waits one
 * flush interval (an event reaches the queue within it), reads the jobs queued until then once,
 * and then polls only those jobs. Returns the orgs skipped, and why: still behind at the timeout,
 * or with events in dead-lettered jobs (only a replay ingests them, so waiting cannot help; a
 * key whose only use is in one must not be judged unused).
 */
export async function whenUsageComplete(
  deps: FreshnessDeps,
  orgIds: readonly string[],
  fresh: (orgId: string) => Promise<void>,
): Promise<{ skipped: Skipped[] }> {
  const dead = await q.deadLetteredOrgs(deps.db);
  const held = new Set(dead.all ? orgIds : dead.orgs);
  const skipped = orgIds
    .filter((o) => held.has(o))
    .map((orgId) => ({ orgId, reason: DEAD_LETTERED }));
  const behind = await whenIngested(
    deps,
    orgIds.filter((o) => !held.has(o)),
    fresh,
  );
  return { skipped: [...skipped, ...behind] };
}

async function whenIngested(
  deps: FreshnessDeps,
  orgIds: readonly string[],
  fresh: (orgId: string) => Promise<void>,
): Promise<Skipped[]> {
  if (orgIds.length === 0) return [];
  const start = await databaseNow(deps.db);
  const cutoff = new Date(start.getTime() + deps.flushIntervalMs + SEND_MARGIN_MS);
  await sleep(deps.flushIntervalMs + SEND_MARGIN_MS);
  const jobs = await q.pendingUsageJobs(deps.db, cutoff);
  const unlisted = jobs.filter((j) => j.orgs === null).map((j) => j.id);
  const byOrg = new Map<string, string[]>();
  for (const job of jobs) {
    for (const org of job.orgs ?? []) {
      const ids = byOrg.get(org);
      if (ids) ids.push(job.id);
      else byOrg.set(org, [job.id]);
    }
  }
  let pending = new Set(jobs.map((j) => j.id));
  // Jobs that failed for good while the run waited: dead-lettered, their events not ingested.
  const failed = new Set<string>();
  const deadline = Date.now() + deps.timeoutMs;
  let waiting = [...orgIds];
  const skipped: Skipped[] = [];
  for (;;) {
    const behind: string[] = [];
    for (const orgId of waiting) {
      const own = byOrg.get(orgId) ?? [];
      const any = (ids: Set<string>) =>
        unlisted.some((id) => ids.has(id)) || own.some((id) => ids.has(id));
      if (any(failed)) skipped.push({ orgId, reason: DEAD_LETTERED });
      else if (any(pending)) behind.push(orgId);
      else await fresh(orgId);
    }
    waiting = behind;
    if (waiting.length === 0) return skipped;
    if (Date.now() >= deadline) {
      const reason = `usage events queued before ${cutoff.toISOString()} are not ingested yet`;
      return [...skipped, ...waiting.map((orgId) => ({ orgId, reason }))];
    }
    await sleep(POLL_MS);
    const now = await q.usageJobStates(deps.db, [...pending]);
    pending = now.pending;
    for (const id of now.failed) failed.add(id);
  }
}
