import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../../platform/logger.ts';
import { requestId } from './request-context.ts';

/** One line per request: ids and the route template, never headers or bodies. */
export function accessLog(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const route = req.route
        ? `${req.baseUrl}${String((req.route as { path: unknown }).path)}`
        : undefined;
      logger.info(
        {
          request_id: requestId(req, res),
          method: req.method,
          route,
          status: res.statusCode,
          duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
          key_id: req.apiKey?.id,
        },
        'request',
      );
    });
    next();
  };
}
