import { Router, type Request, type Response } from 'express';
import { AppError } from '../../platform/errors.ts';
import type { Keytrail } from '../../keytrail.ts';
import { verifyInput, type VerifyInput } from '../verify-input.ts';
import { missesRefused } from '../middleware/require-key.ts';
import { recordWhenDone, requestStart, type RequestStart } from '../middleware/usage-recorder.ts';
import { verifyOutcome, type VerifyResult } from '../../keys/keys.auth.ts';
import type { KeyIdentity, VerifyCode } from '../../keys/keys.types.ts';
import { ADMITTED, UNAVAILABLE } from '../../limits/rate-limiter.ts';
import { QUOTA_EXCEEDED } from '../../limits/limiter.ts';
import type { Outcome } from '../../usage/usage.types.ts';

const VERIFY_OUTCOMES: Partial<Record<VerifyCode, Outcome>> = {
  VALID: 'success',
  REVOKED: 'revoked',
  EXPIRED: 'expired',
  INSUFFICIENT_SCOPE: 'insufficient_scope',
  IP_NOT_ALLOWED: 'ip_denied',
  RATE_LIMITED: 'rate_limited',
  QUOTA_EXCEEDED: 'quota_exceeded',
};

const JSON_TYPE = 'application/json; charset=utf-8';

/** What Express's res.json would send, without its send() machinery (no ETag on API answers). */
function sendJson(res: Response, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = 200;
  res.setHeader('Content-Type', JSON_TYPE);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

type Limited = { code: VerifyCode | null; ratelimits?: unknown; quota?: { remaining: number } };

/**
 * POST /api/keys/verify. A cached key is verified and answered without a promise (the
 * authentication, the checks and the limits all decide in memory); only an uncached key, or
 * limits without credit in hand, wait.
 */
export function verifyRoutes(kt: Keytrail): Router {
  const router = Router();

  function answer(
    req: Request,
    res: Response,
    input: VerifyInput,
    start: RequestStart,
    result: VerifyResult,
    limited: Limited | null,
  ): void {
    const final: VerifyResult = limited?.code
      ? { valid: false, code: limited.code, ...(result.key && { key: result.key }) }
      : result;
    if (final.code === 'IP_NOT_ALLOWED') kt.limits.decisions.ipDenied += 1;
    const key = final.key;
    // The verified key was used (or refused) through a gateway: that is usage of that key.
    if (key) {
      const outcome = VERIFY_OUTCOMES[final.code] ?? 'success';
      recordWhenDone(
        req,
        res,
        { record: kt.usage.record, clock: kt.clock },
        { keyId: key.id, orgId: key.orgId, outcome: () => outcome, ip: input.ip },
        start,
      );
    }
    sendJson(res, {
      valid: final.valid,
      code: final.code,
      ...(key && {
        key_id: key.id,
        org_id: key.orgId,
        environment: key.environment,
        scopes: key.scopes,
        expires_at: key.expiresAt?.toISOString() ?? null,
      }),
      ...(limited?.ratelimits !== undefined && { ratelimits: limited.ratelimits }),
      ...(limited?.quota && { quota: limited.quota }),
    });
  }

  /** The verified key's rate limits and quota (SPEC §11), then the answer. */
  function decideLimits(
    req: Request,
    res: Response,
    input: VerifyInput,
    start: RequestStart,
    result: VerifyResult,
    next: (error: unknown) => void,
  ): void {
    const limits = result.valid ? result.key?.limits : undefined;
    if (!limits || (!limits.rate && !limits.quota)) {
      answer(req, res, input, start, result, null);
      return;
    }
    kt.limits.limiter.decideThen(limits, input.cost ?? 1, (verdict) => {
      if (verdict === UNAVAILABLE) {
        next(new AppError('service_unavailable', { retryAfterSeconds: 1 }));
        return;
      }
      const code: VerifyCode | null =
        verdict === ADMITTED
          ? null
          : verdict === QUOTA_EXCEEDED
            ? 'QUOTA_EXCEEDED'
            : 'RATE_LIMITED';
      answer(req, res, input, start, result, {
        code,
        ...(limits.rate && { ratelimits: kt.limits.rate.snapshot(limits.subject, limits.rate) }),
        ...(limits.quota && { quota: { remaining: kt.limits.quota.remaining(limits.subject) } }),
      });
    });
  }

  router.post('/api/keys/verify', kt.requireKey({ scopes: ['keys:verify'] }), (req, res, next) => {
    const start = requestStart(kt.clock);
    const caller: KeyIdentity | undefined = req.apiKey;
    if (!caller) throw new AppError('unauthenticated');
    const input = verifyInput(req.body);
    const request = { scopes: input.scopes ?? [], ip: input.ip };
    // The verified key is a lookup too: an unknown one takes a token of the caller's address.
    const known = kt.auth.authenticateCached(input.key);
    if (known) {
      decideLimits(req, res, input, start, verifyOutcome(caller, known, request), next);
      return;
    }
    if (!kt.missLimiter.allow(req.ip)) {
      res.setHeader('retry-after', String(kt.missLimiter.retryAfterSeconds()));
      throw missesRefused();
    }
    kt.auth.authenticate(input.key).then((outcome) => {
      const result = verifyOutcome(caller, outcome, request);
      if (result.code === 'NOT_FOUND') kt.missLimiter.charge(req.ip);
      decideLimits(req, res, input, start, result, next);
    }, next);
  });
  return router;
}
