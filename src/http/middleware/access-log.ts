import type { NextFunction, Request, Response } from 'express';
import type { Histogram } from 'prom-client';
import type { Logger } from '../../platform/logger.ts';
import { requestId } from './request-context.ts';
import { routeTemplate } from '../route-template.ts';

/** One line and one latency observation per request: ids and route template, never headers. */
export function accessLog(
  logger: Logger,
  duration?: Histogram<'method' | 'route' | 'status_class'>,
) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const route = routeTemplate(req);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const statusClass = `${Math.floor(res.statusCode / 100)}xx`;
      duration?.observe(
        { method: req.method, route: route ?? 'unmatched', status_class: statusClass },
        seconds,
      );
      // The log object is built only when the line is written (info is off at warn and above).
      if (!logger.isLevelEnabled('info')) return;
      logger.info(
        {
          request_id: requestId(req, res),
          method: req.method,
          route,
          status: res.statusCode,
          duration_ms: seconds * 1000,
          key_id: req.apiKey?.id,
        },
        'request',
      );
    });
    next();
  };
}
