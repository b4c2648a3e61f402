import type { NextFunction, Request, Response } from 'express';
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

export function requestContext(req: Request, res: Response, next: NextFunction): void {
  requestId(req, res);
  next();
}
