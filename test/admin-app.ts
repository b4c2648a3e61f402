/**
 * A server for the admin UI's browser tests that tracks usage, with the worker ingesting it.
 * In test/, not src/testing/: nothing under src/ may import workers/.
 */
import { startWorker, type Worker } from '../workers/main.ts';
import { startTestApp, type TestApp } from '../src/testing/harness.ts';

/** A real server that records usage (flushed every 50 ms) and a worker that ingests it. */
export async function startTrackingApp(dbUrl: string): Promise<{ app: TestApp; worker: Worker }> {
  const app = await startTestApp(dbUrl, {
    config: { usage: { tracking: true, flushIntervalMs: 50, batchSize: 1000, bufferMax: 100_000 } },
  });
  return { app, worker: await startWorker(app.kt) };
}
