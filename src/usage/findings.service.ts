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
    // The spike windows of the org usage page.
    return orgFindings(deps.db, {
      orgId,
      now,
      ...spikeWindows(now),
      factor: deps.spike.factor,
      spikeMin: deps.spike.minRequests,
    });
  };
}

export type Findings = ReturnType<typeof createFindings>;
