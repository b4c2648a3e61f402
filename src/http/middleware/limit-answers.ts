/**
 * How requireKey answers a decision of the key's limits (SPEC §11): the IETF rate-limit fields
 * on every response of a key with rate limits, and the problem of a refusal.
 */
import type { Request, Response } from 'express';
import { AppError } from '../../platform/errors.ts';
import type { KeyLimits } from '../../limits/key-limits.ts';
import type { Limits } from '../../limits/limits-sync.ts';
import { QUOTA_EXCEEDED } from '../../limits/limiter.ts';
import { UNAVAILABLE } from '../../limits/rate-limiter.ts';
import type { Outcome } from '../../usage/usage.types.ts';
import { sendProblem, toProblem } from '../problem.ts';
import { requestId } from './request-context.ts';

/** A key's own rate limit refused the request (the other 429s are the service's own). */
export const rateLimited = (policy: string) =>
  new AppError('rate_limited', {
    detail: `the key's rate limit "${policy}" is used up for this window; retry after Retry-After seconds`,
  });

export const quotaExceeded = () =>
  new AppError('quota_exceeded', {
    detail: "the key's quota is used up; it refills as Retry-After says, if it has a refill",
  });

/** The `RateLimit-Policy` and `RateLimit` fields, for a key with rate limits. */
export function setRateFields(res: Response, limits: Limits, key: KeyLimits): void {
  if (!key.rate) return;
  res.setHeader('RateLimit-Policy', key.rate.headers.policy);
  res.setHeader('RateLimit', limits.rate.header(key.subject, key.rate));
}

/**
 * Answers a refusal (any verdict but ADMITTED); returns the outcome to record, or null for a
 * 503 (no decision was made: neither use nor a refusal of the key).
 */
export function refuse(
  req: Request,
  res: Response,
  limits: Limits,
  key: KeyLimits,
  verdict: number,
): Outcome | null {
  if (verdict === UNAVAILABLE) {
    // Claims failing for a moment: no decision (degraded mode, or the takes, resume shortly).
    res.setHeader('Retry-After', '1');
    sendProblem(res, toProblem(new AppError('service_unavailable'), requestId(req, res)));
    return null;
  }
  if (verdict === QUOTA_EXCEEDED) {
    const after = limits.quota.retryAfter(key.subject);
    if (after !== null) res.setHeader('Retry-After', String(after));
    const problem = toProblem(quotaExceeded(), requestId(req, res));
    sendProblem(res, { ...problem, violated_policies: ['quota'] });
    return 'quota_exceeded';
  }
  const rate = key.rate;
  const policy = rate?.policies[verdict]?.name ?? '';
  if (rate)
    res.setHeader('Retry-After', String(limits.rate.retryAfter(key.subject, rate, verdict)));
  const problem = toProblem(rateLimited(policy), requestId(req, res));
  sendProblem(res, { ...problem, violated_policies: [policy] });
  return 'rate_limited';
}
