/** The org's findings (issue 20): what an org admin should look at, each linked to its key. */
import type { Clock } from '../platform/clock.ts';
import type { Database } from '../platform/db.ts';
import { spikeWindows } from './analytics.queries.ts';
import { orgFindings, type FindingRow } from './findings.queries.ts';

export type { FindingRow };

export function createFindings(deps: {
  db: Database;
  clock: Clock;
  spike: { factor: number; minRequests: number };
}) {
  return function findings(orgId: string): Promise<FindingRow[]> {
    const now = deps.clock.now();
    // "The last 24 hours" of the org usage page's spike windows.
    return orgFindings(deps.db, {
      orgId,
      now,
      since24h: spikeWindows(now).since24h,
      factor: deps.spike.factor,
      spikeMin: deps.spike.minRequests,
    });
  };
}

export type Findings = ReturnType<typeof createFindings>;
