/**
 * Two keytrail instances on one test database (as two `serve` processes share one Postgres),
 * the first tracking usage with a worker, and an org: the setup of the limits' tests.
 */
import { startTestApp, type TestApp } from './harness.ts';
import { createOrg, type TestOrg } from './factories.ts';

export const TRACKING = {
  tracking: true,
  flushIntervalMs: 50,
  batchSize: 1000,
  bufferMax: 100_000,
} as const;

export type Instances = { a: TestApp; b: TestApp; org: TestOrg; close(): Promise<void> };

/** `startWorker`: workers/main.ts's, passed in (nothing in src/ imports workers/). */
export async function startTwoInstances(
  url: string,
  orgName: string,
  startWorker: (kt: TestApp['kt']) => Promise<{ stop(): Promise<void> }>,
): Promise<Instances> {
  const a = await startTestApp(url, { config: { usage: TRACKING } });
  const b = await startTestApp(url);
  const worker = await startWorker(a.kt);
  const org = await createOrg(a.client, orgName);
  return {
    a,
    b,
    org,
    async close() {
      await worker.stop();
      await a.close();
      await b.close();
    },
  };
}
