import { isIP } from 'node:net';
import { v7 as uuidv7 } from 'uuid';
import type { Clock } from '../platform/clock.ts';
import type { Database } from '../platform/db.ts';
import { AppError, type FieldError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import { UsageBuffer, type UsageSink } from './usage.buffer.ts';
import { packEvents } from './usage.jobs.ts';
import { keysOfOrg } from './usage.queries.ts';
import { normalizePath } from './routes-normalize.ts';
import { cleanText, USER_AGENT_MAX, type Outcome, type UsageEvent } from './usage.types.ts';

const DAY_MS = 86_400_000;
export const REPORT_WINDOW = { pastMs: 7 * DAY_MS, futureMs: 5 * 60_000 };
/**
 * A month is closed this long after its end (past the report window, with a day to spare):
 * `partitions compress` may make it columnar. Rows this recent are never in a columnar month.
 */
export const CLOSED_AFTER_MS = REPORT_WINDOW.pastMs + DAY_MS;

export type ReportedEvent = {
  eventId?: string | undefined;
  keyId: string;
  occurredAt: Date;
  method: string;
  path?: string | undefined;
  route?: string | undefined;
  status: number;
  latencyMs: number;
  ip?: string | null | undefined;
  userAgent?: string | null | undefined;
  outcome?: Outcome | undefined;
};

export const truncateAgent = (ua: string | undefined | null): string | null =>
  ua ? cleanText(ua, USER_AGENT_MAX) : null;

/**
 * IPv4 clients on a dual-stack socket appear as ::ffff:a.b.c.d; store the IPv4 form. Anything
 * that is not an IP (a forged X-Forwarded-For behind a trusting proxy setting) becomes null, so
 * one bad header cannot poison the batch it travels in.
 */
export function normalizeIp(ip: string | undefined | null): string | null {
  if (!ip) return null;
  // The common cases first, without a regex: a plain address, or IPv4 mapped into IPv6.
  if (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4) return ip.slice(7);
  if (!ip.includes('%')) return isIP(ip) === 0 ? null : ip;
  // Zone ids (fe80::1%eth0) are valid for Node but not for Postgres inet: drop them.
  return normalizeIp(ip.slice(0, ip.indexOf('%')));
}

/**
 * A `success` at a time the key no longer worked (revoked, or expired, at or before
 * `occurred_at`) is stored as the refusal it must have been: counted as denied, never as use, so
 * a leaked events:write key cannot keep a dead key from looking dormant. Not refused: a gateway
 * that caches verify answers (keytrail's own cache lives up to 30 s) or whose clock runs a little
 * ahead reports such events in good faith, and refusing one would lose the rest of its batch.
 */
function reportedOutcome(
  key: { revokedAt: Date | null; expiresAt: Date | null } | undefined,
  e: ReportedEvent,
): Outcome {
  const outcome = e.outcome ?? 'success';
  if (outcome !== 'success' || !key) return outcome;
  const t = e.occurredAt.getTime();
  if (key.revokedAt && key.revokedAt.getTime() <= t) return 'revoked';
  if (key.expiresAt && key.expiresAt.getTime() <= t) return 'expired';
  return outcome;
}

/** What a 202 reports: `reclassified` only when some `success` was stored as a refusal. */
export type ReportResult = { accepted: number; reclassified?: number };

/** SPEC §5.4's 422s, all-or-nothing: a key outside the org, an occurred_at outside the window. */
function assertReportable(
  events: readonly ReportedEvent[],
  owned: ReadonlyMap<string, unknown>,
  now: number,
): void {
  const errors: FieldError[] = [];
  events.forEach((e, i) => {
    if (!owned.has(e.keyId))
      errors.push({ path: `body.events.${i}.key_id`, message: 'no such key in this org' });
    const t = e.occurredAt.getTime();
    if (t < now - REPORT_WINDOW.pastMs || t > now + REPORT_WINDOW.futureMs) {
      errors.push({
        path: `body.events.${i}.occurred_at`,
        message: 'outside [now - 7 days, now + 5 minutes]',
      });
    }
  });
  if (errors.length > 0) {
    const named = errors
      .slice(0, 5)
      .map((e) => e.path)
      .join(', ');
    const more = errors.length > 5 ? ` and ${errors.length - 5} more` : '';
    throw new AppError('unprocessable', {
      detail: `batch rejected, nothing stored: ${named}${more}`,
      errors: errors.slice(0, 100),
    });
  }
}

export function createUsageService(deps: {
  db: Database;
  clock: Clock;
  logger: Logger;
  sink: UsageSink;
  tracking: boolean;
  buffer: { flushIntervalMs: number; batchSize: number; bufferMax: number };
}) {
  const { db, clock, sink } = deps;
  const buffer = new UsageBuffer(
    sink,
    {
      flushIntervalMs: deps.buffer.flushIntervalMs,
      maxBatch: deps.buffer.batchSize,
      maxBuffered: deps.buffer.bufferMax,
      maxBackoffMs: 10_000,
    },
    deps.logger,
  );

  /**
   * Request path: synchronous, no await, never throws. An empty event id is assigned at flush.
   * The event is kept as given (no copy): the caller hands it over.
   */
  function record(event: UsageEvent): void {
    if (!deps.tracking) return;
    try {
      buffer.record(event);
    } catch (error) {
      deps.logger.error({ err: String(error) }, 'usage record failed');
    }
  }

  /**
   * Reported events: validated all-or-nothing, each `success` of a dead key reclassified
   * (reportedOutcome), then sent as one job straight to the queue so the 202 means the batch is
   * durable. Event ids default to UUIDv7s derived from occurred_at.
   */
  async function report(orgId: string, events: readonly ReportedEvent[]): Promise<ReportResult> {
    const now = clock.now().getTime();
    const owned = await keysOfOrg(db, orgId, [...new Set(events.map((e) => e.keyId))]);
    assertReportable(events, owned, now);
    let reclassified = 0;
    const job = await packEvents(
      events.map((e) => {
        const outcome = reportedOutcome(owned.get(e.keyId), e);
        if (outcome !== (e.outcome ?? 'success')) reclassified += 1;
        return {
          eventId: e.eventId ?? uuidv7({ msecs: e.occurredAt.getTime() }),
          orgId,
          keyId: e.keyId,
          occurredAt: e.occurredAt.getTime(),
          method: e.method.toUpperCase(),
          // Reported routes are normalised too: a gateway may send raw paths as routes.
          route: normalizePath(cleanText(e.route ?? e.path ?? '/', 2000)),
          status: e.status,
          latencyMs: e.latencyMs,
          ip: normalizeIp(e.ip),
          userAgent: truncateAgent(e.userAgent),
          outcome,
        };
      }),
    );
    try {
      await sink(job);
    } catch (error) {
      throw new AppError('service_unavailable', { context: { err: String(error) } });
    }
    return { accepted: events.length, ...(reclassified > 0 && { reclassified }) };
  }

  return { record, report, buffer, stop: (deadlineMs?: number) => buffer.stop(deadlineMs) };
}

export type UsageService = ReturnType<typeof createUsageService>;
