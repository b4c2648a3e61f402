/** The org's findings (issue 20): what an org admin should look at, each linked to its key. */
import type { Clock } from '../platform/clock.ts';
import type { Database } from '../platform/db.ts';
import { orgFindings, type FindingRow } from './findings.queries.ts';

export type { FindingRow };

const HOUR_MS = 3_600_000;

export function createFindings(deps: {
  db: Database;
  clock: Clock;
  spike: { factor: number; minRequests: number };
}) {
  return function findings(orgId: string): Promise<FindingRow[]> {
    const now = deps.clock.now();
    // The spike windows of the org usage page: the current hour and the 23 before it.
    const currentHour = now.getTime() - (now.getTime() % HOUR_MS);
    const since24h = new Date(currentHour - 23 * HOUR_MS);
    const since8d = new Date(since24h.getTime() - 7 * 24 * HOUR_MS);
    return orgFindings(deps.db, {
      orgId,
      now,
      since24h,
      since8d,
      factor: deps.spike.factor,
      spikeMin: deps.spike.minRequests,
    });
  };
}

export type Findings = ReturnType<typeof createFindings>;
