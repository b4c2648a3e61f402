import { PgBoss } from 'pg-boss';
import type { Logger } from './logger.ts';

export type { PgBoss };
export type QueueDefinition = {
  name: string;
  deadLetter?: string;
  retryLimit?: number;
  notify?: boolean;
  /** A job held longer than this by a worker (killed mid-batch) is handed out again. */
  expireInSeconds?: number;
};

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
  });
  boss.on('error', (error: unknown) => options.logger.warn({ err: String(error) }, 'queue error'));
  await boss.start();
  return boss;
}

/**
 * Creates the queues (idempotent) and asserts they exist: pg-boss resolves `send()` to a
 * missing queue with null instead of failing, which would lose events silently.
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
    });
    if (!(await boss.getQueue(q.name))) throw new Error(`queue ${q.name} could not be created`);
  }
}

/** Sends one job; a null id (missing queue) is an error, never a silent loss. */
export async function sendJob(boss: PgBoss, queue: string, data: object): Promise<string> {
  const id = await boss.send(queue, data);
  if (id === null) throw new Error(`queue ${queue} did not accept the job`);
  return id;
}
