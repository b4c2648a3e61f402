import { Router } from 'express';
import type { z } from 'zod';
import { AppError, isAppError } from '../../platform/errors.ts';
import type { Keytrail } from '../../keytrail.ts';
import type { KeySelfJson } from '../schemas.ts';

const notFoundAsNull = (error: unknown): null => {
  if (isAppError(error) && error.code === 'not_found') return null;
  throw error;
};

/** `GET /api/keys/self`: any valid key describes itself (the admin page learns its org here). */
export function keysSelfRoutes(kt: Keytrail): Router {
  const router = Router();
  router.get('/api/keys/self', kt.requireKey(), async (req, res) => {
    if (!req.apiKey) throw new AppError('unauthenticated');
    // One primary-key read (the auth cache holds no name), by the caller's own org and id: no
    // other key can be named. A key revoked or expired since it was cached is refused as well.
    const key = await kt.keys.get(req.apiKey.orgId, req.apiKey.id).catch(notFoundAsNull);
    if (key?.status !== 'active') {
      res.setHeader('WWW-Authenticate', 'Bearer error="invalid_token"');
      throw new AppError('unauthenticated', { detail: 'the API key is not valid' });
    }
    const body: z.infer<typeof KeySelfJson> = {
      key_id: key.id,
      org_id: key.orgId,
      name: key.name,
      environment: key.environment,
      scopes: key.scopes,
      expires_at: key.expiresAt?.toISOString() ?? null,
    };
    res.json(body);
  });
  return router;
}
