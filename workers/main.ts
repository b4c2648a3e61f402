/**
 * `keytrail worker`: consumes usage.ingest in batches, keeps partitions ahead (at start-up and on
 * a daily schedule), and stops gracefully. `keytrail serve` runs the same worker in-process.
 */
import type { Keytrail } from '../src/keytrail.ts';
import { startDeadLetterGauge } from '../src/usage/usage.dead-letter-gauge.ts';
import { createIngester } from '../src/usage/usage.ingest.ts';
import {
  MAINTENANCE_CRON,
  MAINTENANCE_QUEUE,
  USAGE_INGEST_QUEUE,
} from '../src/usage/usage.jobs.ts';
import { startWebhookWorker } from '../src/webhooks/delivery.worker.ts';
import { KEY_WATCH_CRON, KEY_WATCH_QUEUE, runKeyWatch } from '../src/webhooks/watch.ts';
import { ingestUsageHandler } from './ingest-usage.ts';
import { runMaintenance } from './maintenance.ts';

export type Worker = { stop(): Promise<void> };

/** `deadLetterRefreshMs`: how often the dead-letter gauge is recounted (tests shorten it). */
export async function startWorker(
  kt: Keytrail,
  options: { deadLetterRefreshMs?: number } = {},
): Promise<Worker> {
  const boss = await kt.queue();
  // Start-up upkeep must not keep ingest from starting: a failed prune is logged and retried
  // by tomorrow's schedule.
  await runMaintenance(kt, { daily: false }).catch((error: unknown) =>
    kt.logger.error({ err: String(error) }, 'start-up maintenance failed; ingest starts anyway'),
  );
  const ingester = createIngester(kt.ingestDatabase, {
    retentionDays: kt.config.retentionDays,
    routesPerKeyDay: kt.config.worker.routesPerKeyDay,
  });
  const handler = ingestUsageHandler({ ingester, logger: kt.logger, metrics: kt.metrics });
  const ingestWorker = await boss.work(
    USAGE_INGEST_QUEUE,
    {
      batchSize: kt.config.worker.batchJobs,
      localConcurrency: kt.config.worker.concurrency,
      perJobResults: true,
      // Each job's own retry limit: the handler tells a job's last attempt by it.
      includeMetadata: true,
      pollingIntervalSeconds: 0.5,
      notifyPollingIntervalSeconds: 5,
      // A full batch means more is waiting: fetch again at once instead of sleeping.
      burstWhenBatchFull: true,
    },
    handler,
  );
  await boss.schedule(MAINTENANCE_QUEUE, MAINTENANCE_CRON, {}, { tz: 'UTC' });
  const maintenanceWorker = await boss.work(MAINTENANCE_QUEUE, async () =>
    runMaintenance(kt, { daily: true }),
  );
  await boss.schedule(KEY_WATCH_QUEUE, KEY_WATCH_CRON, {}, { tz: 'UTC' });
  const watchWorker = await boss.work(KEY_WATCH_QUEUE, async () => {
    const report = await runKeyWatch(kt.backgroundDatabase.db, {
      now: kt.clock.now(),
      spike: kt.config.spike,
    });
    if (report.expired + report.expiring + report.spikes > 0) {
      kt.logger.info({ ...report }, 'key watch: notices written');
    }
  });
  // One watch now: a restarted worker (or a new deployment) flags spikes without waiting for
  // the schedule; the findings list the flagged keys.
  await boss.send(KEY_WATCH_QUEUE, {});
  const webhooks = await startWebhookWorker(kt, boss);
  // Started last: a start-up that fails above leaves no timer counting behind.
  const deadLetters = startDeadLetterGauge({
    db: kt.backgroundDatabase.db,
    logger: kt.logger,
    intervalMs: options.deadLetterRefreshMs,
  });
  kt.metrics.observeDeadLetters(() => deadLetters.read());
  kt.logger.info({ concurrency: kt.config.worker.concurrency }, 'usage worker started');
  return {
    async stop() {
      await boss.offWork(USAGE_INGEST_QUEUE, { id: ingestWorker, wait: true });
      await boss.offWork(MAINTENANCE_QUEUE, { id: maintenanceWorker, wait: true });
      await boss.offWork(KEY_WATCH_QUEUE, { id: watchWorker, wait: true });
      await webhooks.stop();
      await deadLetters.stop();
    },
  };
}
