import type { QueueDefinition } from '../platform/queue.ts';
import { WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_DELIVERY_QUEUE } from '../webhooks/webhooks.types.ts';
import { KEY_WATCH_QUEUE } from '../webhooks/watch.ts';
import { MAINTENANCE_QUEUE, USAGE_DEAD_LETTER_QUEUE, USAGE_INGEST_QUEUE } from './usage.jobs.ts';

/**
 * Every queue keytrail uses, dead-letter queues first so they exist when referenced.
 * `retentionDays` is the raw-event retention (config.retentionDays): a dead-lettered ingest job
 * waits for `keytrail ingest replay-dead` as long as its events could still be stored; past it,
 * a replay would drop them as expired anyway. pg-boss deletes a job waiting longer, silently:
 * the worker warns of the ones due within a week (usage.dead-letter-gauge.ts).
 */
export function queuesFor(retentionDays: number): readonly QueueDefinition[] {
  return [
    { name: USAGE_DEAD_LETTER_QUEUE, retryLimit: 0, retentionSeconds: retentionDays * 86_400 },
    ...OTHER_QUEUES,
  ];
}

const OTHER_QUEUES: readonly QueueDefinition[] = [
  { name: WEBHOOK_DEAD_LETTER_QUEUE, retryLimit: 3 },
  // A batch commits in well under a second. A worker that dies (SIGKILL, lost Postgres) stops
  // refreshing its jobs' heartbeat: they are retried (replay-safe) after at most 10 s plus one
  // supervise pass (2 s). 120 s stays the hard limit for a handler that hangs while alive.
  {
    name: USAGE_INGEST_QUEUE,
    deadLetter: USAGE_DEAD_LETTER_QUEUE,
    retryLimit: 10,
    notify: true,
    expireInSeconds: 120,
    heartbeatSeconds: 10,
  },
  // A day's upkeep may take a while (prunes, a minute of waiting per lagging org): an hour
  // before pg-boss takes it for hung and retries it alongside.
  { name: MAINTENANCE_QUEUE, retryLimit: 3, expireInSeconds: 3600 },
  // Every 5 minutes; a run is a few indexed statements. Missing one only delays its notices.
  { name: KEY_WATCH_QUEUE, retryLimit: 1, expireInSeconds: 600 },
  // One attempt is at most the 10 s deadline and two small transactions. Jobs carry their own
  // retry settings (config.webhooks.retry); a killed worker's job is retried from its heartbeat.
  {
    name: WEBHOOK_DELIVERY_QUEUE,
    deadLetter: WEBHOOK_DEAD_LETTER_QUEUE,
    retryLimit: 30,
    notify: true,
    expireInSeconds: 60,
    heartbeatSeconds: 10,
  },
];

/** The queues with the default raw-event retention (90 days): tests and benchmarks. */
export const QUEUES = queuesFor(90);
