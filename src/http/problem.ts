import type { Response } from 'express';
import { KEY_LIKE_RE } from '../keys/key-format.ts';
import { ERROR_CODES, type AppError, type FieldError } from '../platform/errors.ts';

export type Problem = {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  request_id: string;
  errors?: FieldError[];
  /** 429 `rate_limited` of a key's own limits: the policies refused (the IETF draft's member). */
  violated_policies?: string[];
};

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * Key material never leaves in a problem: a detail or a field error can quote the client's input
 * (an unknown field named like a key, a value), so anything key-shaped is masked.
 */
const mask = (text: string): string =>
  text.replace(KEY_LIKE_RE, (key) => `${key.slice(0, key.indexOf('_', 3) + 1)}…(redacted)`);

/** Pure: AppError → RFC 9457 body. 5xx details are generic whatever the error carried. */
export function toProblem(error: AppError, requestId: string): Problem {
  const { status, title } = ERROR_CODES[error.code];
  const problem: Problem = {
    type: `urn:keytrail:problem:${error.code}`,
    title,
    status,
    detail: status >= 500 ? genericDetail(error.code, status) : mask(error.detail ?? title),
    code: error.code,
    request_id: requestId,
  };
  if (error.errors && error.errors.length > 0 && status < 500) {
    problem.errors = error.errors.map((e) => ({ path: mask(e.path), message: mask(e.message) }));
  }
  return problem;
}

function genericDetail(code: AppError['code'], status: number): string {
  // Fixed per code (nothing of the error's own text): what the caller can do about it.
  if (code === 'query_timeout') {
    return 'The request ran past its deadline and was cancelled; retry shortly (for reads of usage or events, narrow the time range or add filters).';
  }
  return status === 503
    ? 'The service is temporarily unavailable; retry shortly.'
    : 'An unexpected error occurred; quote the request_id when reporting it.';
}

export function sendProblem(res: Response, problem: Problem): void {
  res.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
}
