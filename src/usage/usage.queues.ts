import type { QueueDefinition } from '../platform/queue.ts';
import { MAINTENANCE_QUEUE, USAGE_DEAD_LETTER_QUEUE, USAGE_INGEST_QUEUE } from './usage.jobs.ts';

/** Every queue keytrail uses, dead-letter queues first so they exist when referenced. */
export const QUEUES: readonly QueueDefinition[] = [
  { name: USAGE_DEAD_LETTER_QUEUE, retryLimit: 0 },
  // A batch commits in well under a second; a job still held after 2 minutes belongs to a
  // worker that died, and is retried (replay-safe) instead of waiting pg-boss's 15-minute default.
  {
    name: USAGE_INGEST_QUEUE,
    deadLetter: USAGE_DEAD_LETTER_QUEUE,
    retryLimit: 10,
    notify: true,
    expireInSeconds: 120,
  },
  { name: MAINTENANCE_QUEUE, retryLimit: 3 },
];
