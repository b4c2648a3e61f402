import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Keytrail } from '../../keytrail.ts';
import { AppError } from '../../platform/errors.ts';
import type { EventFilter } from '../../usage/events.queries.ts';
import { CursorTime, decodeCursor, encodeCursor } from '../cursor.ts';
import { eventJson, type EventLike } from '../presenters.ts';
import { DEFAULT_EVENTS_WINDOW_MS, EventsQuery } from '../schemas.ts';
import { parseInput } from '../validate.ts';
import { holdReadSlot } from '../middleware/read-share.ts';

const eventCursor = z.tuple([CursorTime, z.uuid()]);
type Format = 'json' | 'ndjson' | 'csv';

const ndjson = (rows: EventLike[]): string =>
  rows.map((r) => `${JSON.stringify(eventJson(r))}\n`).join('');

function formatOf(req: Request, explicit: Format | undefined): Format {
  if (explicit) return explicit;
  const accepted = req.accepts(['application/json', 'application/x-ndjson', 'text/csv']);
  return accepted === 'text/csv' ? 'csv' : accepted === 'application/x-ndjson' ? 'ndjson' : 'json';
}

/** Resolves when the socket can take more, or when the client went away. */
function written(res: Response, chunk: string): Promise<void> {
  if (chunk.length === 0 || res.write(chunk)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** The filters of an events query (its range defaults: the 24 h up to now). */
export function filterOf(
  orgId: string,
  q: Omit<z.infer<typeof EventsQuery>, 'limit' | 'cursor' | 'format'>,
  now: Date,
): EventFilter {
  const to = q.to ?? now;
  const from = q.from ?? new Date(to.getTime() - DEFAULT_EVENTS_WINDOW_MS);
  if (from >= to) throw new AppError('validation_failed', { detail: 'from must be before to' });
  const status = q.status?.endsWith('xx')
    ? { min: Number(q.status[0]) * 100, max: Number(q.status[0]) * 100 + 99 }
    : q.status
      ? { exact: Number(q.status) }
      : undefined;
  return {
    orgId,
    from,
    to,
    keyId: q.key_id,
    status,
    method: q.method,
    route: q.route,
    outcome: q.outcome,
  };
}

/**
 * Takes an export slot (429 when the org runs its share, 503 when the instance runs all) and
 * bounds the export: cut after `maxDurationMs`, after `idleMs` with nothing read, or when in a
 * `windowMs` the client read less than `minBytes` while the socket was full (a slow reader
 * holding a slot). A cut export ends with a reset connection, never a clean end: the client
 * cannot mistake it for the whole range. The slot is freed when the response closes.
 */
export function guardExport(kt: Keytrail, orgId: string, res: Response): void {
  const limits = kt.config.exports;
  // A client gone while authentication waited on Postgres: its 'close' has fired already, and a
  // slot taken now would never come back.
  if (res.closed || res.destroyed) throw new AppError('validation_failed', { detail: 'gone' });
  const slot = kt.exportSlots.acquire(orgId);
  if (slot === 'org') {
    throw new AppError('rate_limited', {
      detail: `this org already runs ${kt.exportSlots.perOrg} exports at once, its limit; retry when one ends`,
      retryAfterSeconds: 10,
    });
  }
  if (slot === 'instance') {
    throw new AppError('service_unavailable', {
      context: { reason: 'every export slot is busy' },
      retryAfterSeconds: 10,
    });
  }
  const socket = res.socket;
  const cut = (reason: string) => {
    kt.exportSlots.cut[reason] = (kt.exportSlots.cut[reason] ?? 0) + 1;
    res.locals.exportCut = reason;
    kt.logger.warn({ reason, request_id: res.locals.requestId as string }, 'export cut');
    res.destroy();
  };
  let sent = socket?.bytesWritten ?? 0;
  const window = setInterval(() => {
    const now = socket?.bytesWritten ?? 0;
    if (res.writableNeedDrain && now - sent < limits.minBytes) cut('slow_reader');
    sent = now;
  }, limits.windowMs);
  const deadline = setTimeout(() => cut('max_duration'), limits.maxDurationMs);
  res.setTimeout(limits.idleMs, () => cut('idle'));
  // 'close' always follows (the response ended, or the client left); one already closed was
  // refused above.
  res.once('close', () => {
    clearInterval(window);
    clearTimeout(deadline);
    slot();
  });
}

/**
 * Counts what an export wrote: its lines (rows, and the CSV's header) and bytes. A CSV field can
 * hold a newline inside quotes (a user agent may): only newlines outside quotes end a row.
 */
export type Meter = { lines: number; bytes: number; quoted?: boolean };

const NEWLINE = 10;
const QUOTE = 34;

/**
 * An escaped quote ("") leaves and enters the quotes again: the state stays right. The next
 * quote's position is kept while the scan is before it: one pass over the chunk.
 */
function countCsvRows(meter: Meter, chunk: Buffer): void {
  let i = 0;
  let quote = chunk.indexOf(QUOTE);
  for (;;) {
    if (quote !== -1 && quote < i) quote = chunk.indexOf(QUOTE, i);
    if (meter.quoted) {
      if (quote === -1) return;
      meter.quoted = false;
      i = quote + 1;
      continue;
    }
    const newline = chunk.indexOf(NEWLINE, i);
    if (newline !== -1 && (quote === -1 || newline < quote)) {
      meter.lines += 1;
      i = newline + 1;
    } else if (quote !== -1) {
      meter.quoted = true;
      i = quote + 1;
    } else return;
  }
}

const stamp = (d: Date) => d.toISOString().slice(0, 19).replace(/[-:]/g, '');

/**
 * Streams the whole filtered range as CSV or NDJSON, paced by the client. Resolves when the
 * answer ended or was cut: `res.writableFinished` tells which. With a `meter`, counts what it
 * writes (an export link's progress) and names an NDJSON file too.
 */
export async function streamEvents(
  kt: Keytrail,
  res: Response,
  filter: EventFilter,
  format: 'csv' | 'ndjson',
  meter?: Meter,
): Promise<void> {
  const name = `usage-events-${stamp(filter.from)}-${stamp(filter.to)}`;
  if (format === 'csv') {
    const csv = await kt.events.csv(filter);
    res.status(200).type('text/csv; charset=utf-8');
    res.attachment(`${name}.csv`);
    const stages = meter
      ? [
          new Transform({
            transform(chunk: Buffer, _encoding, done) {
              meter.bytes += chunk.length;
              countCsvRows(meter, chunk);
              done(null, chunk);
            },
          }),
        ]
      : [];
    // pipeline: backpressure both ways, and a client that leaves ends the COPY.
    await pipeline([csv, ...stages, res]).catch((error: unknown) => {
      // A client leaving mid-export is normal; anything else is worth a log line.
      if (!res.destroyed || !/premature close|aborted/i.test(String(error))) {
        kt.logger.warn(
          { err: String(error), request_id: res.locals.requestId as string },
          'csv export ended early',
        );
      }
    });
    return;
  }
  // NDJSON: one keyset batch in memory at a time, paced by the socket.
  // attachment() sets a type from the extension: the NDJSON type goes after it.
  if (meter) res.attachment(`${name}.ndjson`);
  res.status(200).type('application/x-ndjson');
  for await (const rows of kt.events.batches(filter)) {
    if (res.destroyed) break;
    const text = ndjson(rows);
    if (meter) {
      meter.lines += rows.length;
      meter.bytes += Buffer.byteLength(text);
    }
    await written(res, text);
  }
  res.end();
}

export function eventsRoutes(kt: Keytrail): Router {
  const router = Router();

  router.get(
    '/api/orgs/:orgId/usage-events',
    kt.requireKey({ orgParam: 'orgId', scopes: ['events:read'] }),
    async (req, res) => {
      const query = parseInput(EventsQuery, req.query, 'query');
      const filter = filterOf(req.params.orgId as string, query, kt.clock.now());
      const format = formatOf(req, query.format);
      if (format === 'json') {
        await holdReadSlot(kt, filter.orgId, res);
        const cursor = query.cursor ? decodeCursor(query.cursor, eventCursor) : undefined;
        const after = cursor && { occurredAt: new Date(cursor[0]), eventId: cursor[1] };
        const rows = await kt.events.page(filter, after, query.limit + 1);
        const page = rows.slice(0, query.limit);
        const last = page.at(-1);
        res.json({
          data: page.map(eventJson),
          next_cursor:
            rows.length > query.limit && last
              ? encodeCursor([last.occurred_at.toISOString(), last.event_id])
              : null,
        });
        return;
      }
      guardExport(kt, filter.orgId, res);
      await streamEvents(kt, res, filter, format);
    },
  );

  return router;
}
