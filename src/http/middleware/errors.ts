import type { NextFunction, Request, Response } from 'express';
import { AppError, isAppError } from '../../platform/errors.ts';
import type { Logger } from '../../platform/logger.ts';
import { sendProblem, toProblem } from '../problem.ts';
import { requestId, requestSignal } from './request-context.ts';

/** body-parser error types → our codes. Everything else unknown is a 500. */
const BODY_ERRORS: Record<string, AppError['code']> = {
  'entity.too.large': 'payload_too_large',
  'entity.parse.failed': 'validation_failed',
  'entity.verify.failed': 'validation_failed',
  'request.size.invalid': 'validation_failed',
  'encoding.unsupported': 'unsupported_media_type',
  'charset.unsupported': 'unsupported_media_type',
};

// Connection-level failures (Postgres down or restarting, pool exhausted): retryable, 503.
const UNAVAILABLE_PG_CODES = new Set([
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '08000',
  '08001',
  '08006',
]);
const UNAVAILABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE']);

export function classify(error: unknown): AppError {
  if (isAppError(error)) return error;
  const e = error as { type?: string; code?: string; message?: string } | null;
  const bodyCode = e?.type ? BODY_ERRORS[e.type] : undefined;
  if (bodyCode === 'payload_too_large') {
    return new AppError(bodyCode, { detail: 'request bodies are limited to 1 MiB' });
  }
  if (bodyCode === 'validation_failed') {
    return new AppError(bodyCode, { detail: 'the request body is not valid JSON' });
  }
  if (bodyCode) return new AppError(bodyCode, { detail: 'unsupported body encoding' });
  // The router could not decode a path parameter (`/api/orgs/%zz`): the client's mistake.
  if (error instanceof URIError) {
    return new AppError('validation_failed', { detail: 'the path has malformed percent-encoding' });
  }
  // A body that does not match its Content-Encoding: zlib's codes (gzip, deflate: Z_DATA_ERROR…)
  // and brotli's (ERR__ERROR_FORMAT_…, ERR_PADDING…).
  if (typeof e?.code === 'string' && /^(Z_|ERR__ERROR_|ERR_BROTLI|ERR__)/.test(e.code)) {
    return new AppError('validation_failed', {
      detail: 'the request body does not match its Content-Encoding',
    });
  }
  const code = e?.code ?? '';
  // query_canceled: by the statement timeout of the statement's class. A cancel because the
  // client left is never answered (errorHandler); one sent by an operator (English message
  // "due to user request") is unexpected. A server with non-English messages reports both as
  // timeouts, which is the safer reading (retryable).
  if (code === '57014' && !/user request/.test(e?.message ?? '')) {
    return new AppError('query_timeout', { retryAfterSeconds: 5 });
  }
  if (UNAVAILABLE_PG_CODES.has(code) || UNAVAILABLE_NODE_CODES.has(code)) {
    return new AppError('service_unavailable');
  }
  if (/timeout exceeded when trying to connect|Connection terminated/i.test(e?.message ?? '')) {
    return new AppError('service_unavailable');
  }
  return new AppError('internal');
}

/**
 * The path is not echoed: it is the client's input and can hold key material
 * (`GET /v1/sk_live_…` would hand the key back in `detail`, into logs and proxies).
 */
export function notFoundHandler(req: Request, _res: Response, next: NextFunction): void {
  next(new AppError('not_found', { detail: `no route matches this ${req.method} request` }));
}

/** The one error handler: renders problem+json and logs server errors with their cause. */
export function errorHandler(logger: Logger) {
  return (error: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const id = requestId(req, res);
    // The client left while its body was being read (body-parser's and jsonBody's
    // 'request.aborted'): nobody is left to answer, and nothing failed on this side.
    if ((error as { type?: unknown } | null)?.type === 'request.aborted') {
      logger.info({ request_id: id }, 'client left before sending its whole body');
      res.destroy();
      return;
    }
    // The client left mid-request and its statements were cancelled: nobody is left to answer.
    if (requestSignal(res)?.aborted) {
      logger.info({ request_id: id }, 'client left; its statements were cancelled');
      res.destroy();
      return;
    }
    const appError = classify(error);
    // A deadline reached is the caller's wide read more often than a fault: one line, no stack
    // (an org hammering wide ranges must not flood the error log).
    if (appError.code === 'query_timeout') {
      logger.warn({ request_id: id, method: req.method }, 'statement deadline reached');
    } else if (appError.status >= 500) {
      logger.error({ err: error, request_id: id, context: appError.context }, 'request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (appError.retryAfterSeconds !== undefined)
      res.setHeader('retry-after', String(appError.retryAfterSeconds));
    sendProblem(res, toProblem(appError, id));
  };
}
