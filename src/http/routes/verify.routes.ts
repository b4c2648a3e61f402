import { Router } from 'express';
import { AppError } from '../../platform/errors.ts';
import type { Keytrail } from '../../keytrail.ts';
import { VerifyBody } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export function verifyRoutes(kt: Keytrail): Router {
  const router = Router();
  router.post('/api/keys/verify', kt.requireKey({ scopes: ['keys:verify'] }), async (req, res) => {
    if (!req.apiKey) throw new AppError('unauthenticated');
    const body = parseInput(VerifyBody, req.body ?? {}, 'body');
    const result = await kt.auth.verify(req.apiKey, body.key, body.scopes ?? []);
    const key = result.key;
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
    });
  });
  return router;
}
