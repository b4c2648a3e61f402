import type { Job, JobResult } from 'pg-boss';
import type { Logger } from '../src/platform/logger.ts';
import type { Metrics } from '../src/metrics.ts';
import type { Ingester } from '../src/usage/usage.ingest.ts';
import { mergePayloads, type Batch } from '../src/usage/usage.batch.ts';
import { unpackJob, USAGE_INGEST_QUEUE } from '../src/usage/usage.jobs.ts';
import { QUEUES } from '../src/usage/usage.queues.ts';

/** `last`: the job's last attempt; failing it sends the job to the dead-letter queue. */
type Parsed = { id: string; last: boolean; payload: Batch };

/** The queue's limit, for a job fetched without metadata (tests feeding the handler directly). */
const RETRY_LIMIT = QUEUES.find((q) => q.name === USAGE_INGEST_QUEUE)?.retryLimit ?? 10;

/** A job as pg-boss hands it; the worker fetches with metadata, so retryLimit is the job's own. */
type IngestJob = Job<unknown> & { retryLimit?: number };

/**
 * The usage.ingest handler: parse every job of the batch, ingest all valid ones in one
 * transaction. Invalid payloads go to the dead-letter queue with a log line. If the batch
 * transaction fails, each job is retried alone so one bad job cannot hold back the others.
 * Every job dead-lettered (invalid, or failing its last retry) is logged at error level with its
 * id and reason, and counted; `keytrail ingest replay-dead` brings them back.
 */
export function ingestUsageHandler(deps: { ingester: Ingester; logger: Logger; metrics: Metrics }) {
  const { ingester, logger, metrics } = deps;

  async function ingest(batch: Batch): Promise<void> {
    const result = await ingester.ingestBatch(batch);
    metrics.ingested.inc(result.inserted);
    if (result.expired > 0) {
      metrics.expired.inc(result.expired);
      logger.warn({ expired: result.expired }, 'usage events older than retention dropped');
    }
    let oldest = Infinity;
    for (const t of batch.t) if (t < oldest) oldest = t;
    if (Number.isFinite(oldest)) metrics.ingestLagSeconds.set((Date.now() - oldest) / 1000);
  }

  return async (jobs: IngestJob[]): Promise<JobResult[]> => {
    const results: JobResult[] = [];
    const valid: Parsed[] = [];
    for (const job of jobs) {
      const unpacked = unpackJob(job.data);
      if ('payload' in unpacked) {
        const limit = job.retryLimit ?? RETRY_LIMIT;
        valid.push({ id: job.id, last: job.retryCount >= limit, payload: unpacked.payload });
      } else {
        logger.error(
          { job_id: job.id, reason: unpacked.error },
          'invalid usage payload sent to dead letter',
        );
        metrics.ingestDeadLettered.inc({ reason: 'invalid_payload' });
        results.push({ id: job.id, status: 'deadletter' });
      }
    }
    try {
      await ingest(mergePayloads(valid.map((v) => v.payload)));
      return results.concat(valid.map((v) => ({ id: v.id, status: 'completed' as const })));
    } catch (error) {
      logger.warn(
        { err: String(error), jobs: valid.length },
        'usage batch failed; retrying jobs one by one',
      );
    }
    for (const v of valid) {
      try {
        await ingest(v.payload);
        results.push({ id: v.id, status: 'completed' });
      } catch (error) {
        logger.error(
          { err: String(error), job_id: v.id },
          v.last
            ? 'usage job failed its last retry; sent to dead letter'
            : 'usage job failed; pg-boss will retry it',
        );
        if (v.last) metrics.ingestDeadLettered.inc({ reason: 'retries_exhausted' });
        results.push({ id: v.id, status: 'failed', output: { error: 'ingest failed' } });
      }
    }
    return results;
  };
}
