import { Router } from 'express';
import { AppError } from '../../platform/errors.ts';
import type { Keytrail } from '../../keytrail.ts';
import { VerifyBody } from '../schemas.ts';
import { parseInput } from '../validate.ts';
import { missesRefused } from '../middleware/require-key.ts';
import { recordWhenDone, requestStart } from '../middleware/usage-recorder.ts';
import type { AuthRecord, VerifyCode } from '../../keys/keys.types.ts';
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

/**
 * The verified key's rate limits and quota, after the key, address and scope checks passed
 * (SPEC §11); `cost` is what the quota is charged. Null: a valid key without such limits.
 */
async function limitsOf(kt: Keytrail, key: AuthRecord, cost: number) {
  const limits = key.limits;
  if (!limits || (!limits.rate && !limits.quota)) return null;
  const verdict = await new Promise<number>((resolve) =>
    kt.limits.limiter.decideThen(limits, cost, resolve),
  );
  if (verdict === UNAVAILABLE) {
    throw new AppError('service_unavailable', { retryAfterSeconds: 1 });
  }
  const code: VerifyCode | null =
    verdict === ADMITTED ? null : verdict === QUOTA_EXCEEDED ? 'QUOTA_EXCEEDED' : 'RATE_LIMITED';
  return {
    code,
    ratelimits: limits.rate ? kt.limits.rate.snapshot(limits.subject, limits.rate) : undefined,
    quota: limits.quota ? { remaining: kt.limits.quota.remaining(limits.subject) } : undefined,
  };
}

export function verifyRoutes(kt: Keytrail): Router {
  const router = Router();
  router.post('/api/keys/verify', kt.requireKey({ scopes: ['keys:verify'] }), async (req, res) => {
    const start = requestStart(kt.clock);
    if (!req.apiKey) throw new AppError('unauthenticated');
    const body = parseInput(VerifyBody, req.body ?? {}, 'body');
    // The verified key is a lookup too: an unknown one takes a token of the caller's address.
    const known = kt.auth.authenticateCached(body.key);
    const cached = known !== undefined;
    if (!cached && !kt.missLimiter.allow(req.ip)) {
      res.setHeader('retry-after', String(kt.missLimiter.retryAfterSeconds()));
      throw missesRefused();
    }
    let result = await kt.auth.verify(
      req.apiKey,
      body.key,
      { scopes: body.scopes ?? [], ip: body.ip },
      known,
    );
    if (!cached && result.code === 'NOT_FOUND') kt.missLimiter.charge(req.ip);
    const key = result.key;
    const limited = result.valid && key ? await limitsOf(kt, key, body.cost ?? 1) : null;
    if (limited?.code) result = { valid: false, code: limited.code, key };
    if (result.code === 'IP_NOT_ALLOWED') kt.limits.decisions.ipDenied += 1;
    // The verified key was used (or refused) through a gateway: that is usage of that key.
    if (key) {
      const outcome = VERIFY_OUTCOMES[result.code] ?? 'success';
      recordWhenDone(
        req,
        res,
        { record: kt.usage.record, clock: kt.clock },
        { keyId: key.id, orgId: key.orgId, outcome: () => outcome, ip: body.ip },
        start,
      );
    }
    res.json({
      valid: result.valid,
      code: result.code,
      ...(key && {
        key_id: key.id,
        org_id: key.orgId,
        environment: key.environment,
        scopes: key.scopes,
        expires_at: key.expiresAt?.toISOString() ?? null,
      }),
      ...(limited?.ratelimits && { ratelimits: limited.ratelimits }),
      ...(limited?.quota && { quota: limited.quota }),
    });
  });
  return router;
}
