/**
 * A server for the admin UI's browser tests that tracks usage, with the worker ingesting it.
 * In test/, not src/testing/: nothing under src/ may import workers/.
 */
import { startWorker, type Worker } from '../workers/main.ts';
import { afterAll, beforeAll } from 'vitest';
import type { Keytrail } from '../src/keytrail.ts';
import { createDormantPolicies } from '../src/policies/dormant.service.ts';
import { startTestApp, useTestDatabase, type TestApp } from '../src/testing/harness.ts';

/** A real server that records usage (flushed every 50 ms) and a worker that ingests it. */
export async function startTrackingApp(dbUrl: string): Promise<{ app: TestApp; worker: Worker }> {
  const app = await startTestApp(dbUrl, {
    config: { usage: { tracking: true, flushIntervalMs: 50, batchSize: 1000, bufferMax: 100_000 } },
  });
  return { app, worker: await startWorker(app.kt) };
}

/** startTrackingApp for the calling test file: its own database, closed after the file. */
export function useTrackingApp(): { app: TestApp; worker: Worker; dbUrl: () => string } {
  const dbUrl = useTestDatabase();
  const handle = { dbUrl } as { app: TestApp; worker: Worker; dbUrl: () => string };
  beforeAll(async () => {
    Object.assign(handle, await startTrackingApp(dbUrl()));
  });
  afterAll(async () => {
    await handle.worker.stop();
    await handle.app.close();
  });
  return handle;
}

/** The dormant-key policies of `kt`, giving up on a usage backlog after 300 ms. */
export function impatientPolicies(kt: Keytrail) {
  return createDormantPolicies({
    db: kt.database.db,
    clock: kt.clock,
    logger: kt.logger,
    flushIntervalMs: 50,
    defaultDays: 30,
    freshnessTimeoutMs: 300,
  });
}
