import type { Response } from 'express';
import { ERROR_CODES, type AppError, type FieldError } from '../platform/errors.ts';

export type Problem = {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  request_id: string;
  errors?: FieldError[];
};

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Pure: AppError → RFC 9457 body. 5xx details are generic whatever the error carried. */
export function toProblem(error: AppError, requestId: string): Problem {
  const { status, title } = ERROR_CODES[error.code];
  const problem: Problem = {
    type: `urn:keytrail:problem:${error.code}`,
    title,
    status,
    detail: status >= 500 ? genericDetail(status) : (error.detail ?? title),
    code: error.code,
    request_id: requestId,
  };
  if (error.errors && error.errors.length > 0 && status < 500) problem.errors = error.errors;
  return problem;
}

function genericDetail(status: number): string {
  return status === 503
    ? 'The service is temporarily unavailable; retry shortly.'
    : 'An unexpected error occurred; quote the request_id when reporting it.';
}

export function sendProblem(res: Response, problem: Problem): void {
  res.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
}
