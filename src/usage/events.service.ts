import type { Readable } from 'node:stream';
import type pg from 'pg';
import { copyOut, type Database } from '../platform/db.ts';
import {
  eventsCsvCopy,
  eventsPage,
  type EventCursor,
  type EventFilter,
  type EventRow,
} from './events.queries.ts';

export const EXPORT_BATCH = 5_000;

/**
 * `db`: the reads pool, for JSON pages (one query each, under the org's read share). `exports`: the export pool, for the
 * streamed CSV and NDJSON exports, which hold their connection for as long as the client reads.
 */
export function createEventsService(db: Database, exports: { db: Database; pool: pg.Pool }) {
  return {
    /** The whole filtered range as CSV, produced by Postgres (COPY) and paced by the reader. */
    csv: (filter: EventFilter): Promise<Readable> => copyOut(exports.pool, eventsCsvCopy(filter)),

    page: (
      filter: EventFilter,
      after: EventCursor | undefined,
      limit: number,
    ): Promise<EventRow[]> => eventsPage(db, filter, after, limit),

    /**
     * The whole filtered range, one keyset batch at a time: the caller awaits each batch before
     * the next is read, so memory stays at one batch whatever the range.
     */
    async *batches(filter: EventFilter, batchSize = EXPORT_BATCH): AsyncGenerator<EventRow[]> {
      let after: EventCursor | undefined;
      for (;;) {
        const rows = await eventsPage(exports.db, filter, after, batchSize);
        if (rows.length > 0) yield rows;
        const last = rows.at(-1);
        if (rows.length < batchSize || !last) return;
        after = { occurredAt: last.occurred_at, eventId: last.event_id };
      }
    },
  };
}

export type EventsService = ReturnType<typeof createEventsService>;
