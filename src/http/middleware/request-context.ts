import type { NextFunction, Request, Response } from 'express';
import { runInDbScope } from '../../platform/db-scope.ts';
import { newId } from '../../platform/ids.ts';
import { holdsKey } from '../safe-input.ts';

const SAFE_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Takes a sane incoming X-Request-Id or makes one; echoes it and keeps it in res.locals. */
export function requestId(req: Request, res: Response): string {
  const existing = res.locals.requestId as string | undefined;
  if (existing) return existing;
  const incoming = req.get('x-request-id');
  // Echoed in headers, bodies and logs: never one that looks like an API key.
  const id = incoming && SAFE_ID.test(incoming) && !holdsKey(incoming) ? incoming : newId();
  res.locals.requestId = id;
  if (!res.headersSent) res.setHeader('X-Request-Id', id);
  return id;
}

/** The request's abort signal: it fires when the client leaves before the answer is sent. */
export const requestSignal = (res: Response): AbortSignal | undefined =>
  res.locals.signal as AbortSignal | undefined;

/**
 * Gives the request its id and its database scope: when the client leaves before the answer is
 * complete, every statement the request has running is cancelled (SPEC §9).
 */
export function requestContext(req: Request, res: Response, next: NextFunction): void {
  requestId(req, res);
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  res.locals.signal = controller.signal;
  runInDbScope(controller.signal, next);
}
