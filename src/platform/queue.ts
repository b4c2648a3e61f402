import { PgBoss } from 'pg-boss';
import type { Logger } from './logger.ts';
import { applyRetentionToWaitingJobs } from './queue.queries.ts';

export type { PgBoss };
export type QueueDefinition = {
  name: string;
  deadLetter?: string;
  retryLimit?: number;
  notify?: boolean;
  /** A job held longer than this (a handler that hangs) is failed and retried. */
  expireInSeconds?: number;
  /**
   * A live worker refreshes its jobs' heartbeat every half of this; a job whose heartbeat is
   * older (its worker was killed, or lost Postgres mid-batch) is retried after at most this
   * plus one supervise pass. pg-boss's minimum is 10.
   */
  heartbeatSeconds?: number;
  /**
   * A job waiting (created or retry) longer than this is deleted by pg-boss, without a log line
   * (default 14 days). A change also applies to the jobs already waiting (ensureQueues).
   */
  retentionSeconds?: number;
};

/**
 * How often a supervising process (a worker) looks for expired and heartbeat-less jobs. pg-boss
 * defaults to 60 s, and runs its first pass one interval after start: a killed worker's jobs
 * would wait minutes. The pass is one indexed query per queue.
 */
export const SUPERVISE_SECONDS = 2;

/**
 * Starts pg-boss on its own small pool. API-only processes pass `maintenance: false`: they
 * only send jobs; the worker processes supervise queues and run schedules.
 */
export async function startQueue(options: {
  url: string;
  logger: Logger;
  poolSize?: number;
  maintenance: boolean;
}): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: options.url,
    max: options.poolSize ?? 4,
    application_name: 'keytrail-queue',
    useListenNotify: options.maintenance,
    supervise: options.maintenance,
    schedule: options.maintenance,
    ...(options.maintenance && {
      superviseIntervalSeconds: SUPERVISE_SECONDS,
      monitorIntervalSeconds: SUPERVISE_SECONDS,
    }),
  });
  // pg-boss emits plain objects as well as Errors: log their message, not "[object Object]".
  boss.on('error', (error: unknown) =>
    options.logger.warn({ err: errorText(error) }, 'queue error'),
  );
  await boss.start();
  return boss;
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : JSON.stringify(error);
}

/**
 * Creates the queues and brings existing ones to these settings (pg-boss's createQueue leaves an
 * existing queue as it was, so a changed setting would never reach an upgraded database), then
 * asserts they exist: pg-boss resolves `send()` to a missing queue with null instead of failing,
 * which would lose events silently.
 */
export async function ensureQueues(
  boss: PgBoss,
  queues: readonly QueueDefinition[],
): Promise<void> {
  for (const q of queues) {
    await boss.createQueue(q.name, {
      ...(q.deadLetter && { deadLetter: q.deadLetter }),
      retryLimit: q.retryLimit ?? 10,
      retryBackoff: true,
      retryDelayMax: 300,
      notify: q.notify ?? false,
      ...(q.expireInSeconds && { expireInSeconds: q.expireInSeconds }),
      ...(q.heartbeatSeconds && { heartbeatSeconds: q.heartbeatSeconds }),
      ...(q.retentionSeconds && { retentionSeconds: q.retentionSeconds }),
    });
    const existing = await boss.getQueue(q.name);
    if (!existing) throw new Error(`queue ${q.name} could not be created`);
    const stale =
      (q.expireInSeconds !== undefined && existing.expireInSeconds !== q.expireInSeconds) ||
      (q.heartbeatSeconds !== undefined && existing.heartbeatSeconds !== q.heartbeatSeconds) ||
      (q.retentionSeconds !== undefined && existing.retentionSeconds !== q.retentionSeconds) ||
      existing.retryLimit !== (q.retryLimit ?? 10);
    if (stale) {
      await boss.updateQueue(q.name, {
        retryLimit: q.retryLimit ?? 10,
        ...(q.expireInSeconds !== undefined && { expireInSeconds: q.expireInSeconds }),
        ...(q.heartbeatSeconds !== undefined && { heartbeatSeconds: q.heartbeatSeconds }),
        ...(q.retentionSeconds !== undefined && { retentionSeconds: q.retentionSeconds }),
      });
    }
    if (q.retentionSeconds !== undefined && existing.retentionSeconds !== q.retentionSeconds) {
      await applyRetentionToWaitingJobs(boss, q.name, q.retentionSeconds);
    }
  }
}

/** Sends one job; a null id (missing queue) is an error, never a silent loss. */
export async function sendJob(boss: PgBoss, queue: string, data: object): Promise<string> {
  const id = await boss.send(queue, data);
  if (id === null) throw new Error(`queue ${queue} did not accept the job`);
  return id;
}
