import type { Request, Response } from 'express';
import type { Clock } from '../../platform/clock.ts';
import type { Outcome, UsageEvent } from '../../usage/usage.types.ts';
import { routeOf } from '../../usage/routes-normalize.ts';
import { routeTemplate } from '../route-template.ts';
import { normalizeIp, truncateAgent } from '../../usage/usage.service.ts';

/** Records one event; an empty `eventId` is given one (a UUIDv7) when its batch is flushed. */
export type RecordUsage = (event: UsageEvent) => void;

/** Client closed the connection before the response finished (nginx's convention). */
const CLIENT_CLOSED = 499;

/** Every request no route matched (a 404 of a guessed path) is one route, not one per path. */
export const UNMATCHED_ROUTE = '(unmatched)';

function routeOfRequest(req: Request, res: Response): string {
  const template = routeTemplate(req);
  if (template) return routeOf(template, req.originalUrl);
  // No route: a 404 records as one route; a middleware that answered keeps its normalised path.
  return res.statusCode === 404 ? UNMATCHED_ROUTE : routeOf(undefined, req.originalUrl);
}

export type RequestStart = { occurredAt: number; started: bigint };

export const requestStart = (clock: Clock): RequestStart => ({
  occurredAt: clock.now().getTime(),
  started: process.hrtime.bigint(),
});

/**
 * Records one usage event when the response finishes, or when the connection closes first.
 * Runs after the response: nothing here can delay or fail the request.
 */
export function recordWhenDone(
  req: Request,
  res: Response,
  deps: { record: RecordUsage; clock: Clock },
  /** `ip`: the caller's address when a gateway reports it (verify), else the request's. */
  who: {
    keyId: string;
    orgId: string;
    /** Null: nothing to record (no decision was made about the key: the limiter answered 503). */
    outcome: () => Outcome | null;
    ip?: string | undefined;
  },
  start: RequestStart,
): void {
  const { occurredAt, started } = start;
  const finish = () => {
    const outcome = who.outcome();
    if (outcome === null) return;
    deps.record({
      eventId: '',
      orgId: who.orgId,
      keyId: who.keyId,
      occurredAt,
      method: req.method,
      route: routeOfRequest(req, res),
      status: res.writableFinished ? res.statusCode : CLIENT_CLOSED,
      latencyMs: Number(process.hrtime.bigint() - started) / 1e6,
      ip: normalizeIp(who.ip ?? req.ip),
      userAgent: truncateAgent(req.get('user-agent')),
      outcome,
    });
  };
  // 'close' follows 'finish', or comes alone when the client went away first: one listener.
  res.on('close', finish);
}
