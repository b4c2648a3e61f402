import { Router, type NextFunction, type Request, type Response } from 'express';
import { timingSafeEqual } from 'node:crypto';
import { AppError } from '../../platform/errors.ts';
import type { Keytrail } from '../../keytrail.ts';
import { orgCreatedJson, orgJson } from '../presenters.ts';
import { CreateOrgBody } from '../schemas.ts';
import { parseInput } from '../validate.ts';
import { credentialFrom } from '../middleware/require-key.ts';

function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Operator-only: the endpoint does not exist (404) unless KEYTRAIL_OPERATOR_TOKEN is set. */
function requireOperator(token: string | undefined) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!token) throw new AppError('not_found');
    const given = credentialFrom(req);
    if (!given || !tokenMatches(given, token)) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      throw new AppError('unauthenticated', { detail: 'the operator token is required' });
    }
    next();
  };
}

export function orgsRoutes(kt: Keytrail): Router {
  const router = Router();

  router.post('/api/orgs', requireOperator(kt.config.operatorToken), async (req, res) => {
    const body = parseInput(CreateOrgBody, req.body ?? {}, 'body');
    res.status(201).json(orgCreatedJson(await kt.orgs.create(body.name)));
  });

  router.get('/api/orgs/:orgId', kt.requireKey({ orgParam: 'orgId' }), async (req, res) => {
    res.json(orgJson(await kt.orgs.get(req.params.orgId as string)));
  });

  return router;
}
