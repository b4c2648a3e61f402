import { Router, type Request } from 'express';
import { AppError } from '../../platform/errors.ts';
import { isUuid } from '../../platform/ids.ts';
import type { Keytrail } from '../../keytrail.ts';
import type { KeyIdentity } from '../../keys/keys.types.ts';
import { createdAtIdCursor, decodeCursor, encodeCursor } from '../cursor.ts';
import { apiKeyJson } from '../presenters.ts';
import {
  CreateKeyBody,
  KeyParams,
  ListKeysQuery,
  RevokeQuery,
  RotateKeyBody,
  UpdateKeyBody,
} from '../schemas.ts';
import { parseInput } from '../validate.ts';

const BASE = '/api/orgs/:orgId/api-keys';

function caller(req: Request): KeyIdentity {
  if (!req.apiKey) throw new AppError('unauthenticated');
  return req.apiKey;
}

function keyParams(req: Request): { orgId: string; keyId: string } {
  const params = parseInput(KeyParams, req.params, 'path');
  // A malformed id cannot name an existing key: same answer as an unknown one.
  if (!isUuid(params.keyId)) throw new AppError('not_found', { detail: 'API key not found' });
  return params;
}

export function keysRoutes(kt: Keytrail): Router {
  const router = Router();
  const can = (scope: string) => kt.requireKey({ orgParam: 'orgId', scopes: [scope] });

  router.post(BASE, can('keys:write'), async (req, res) => {
    const body = parseInput(CreateKeyBody, req.body ?? {}, 'body');
    const issued = await kt.keys.create(caller(req), req.params.orgId as string, {
      name: body.name,
      environment: body.environment,
      scopes: body.scopes,
      expiresAt: body.expires_at,
      allowedIps: body.allowed_ips,
      rateLimits: body.rate_limits,
      quota: body.quota,
    });
    res.status(201).json({ key: issued.plaintext, api_key: apiKeyJson(issued.apiKey) });
  });

  router.get(BASE, can('keys:read'), async (req, res) => {
    const query = parseInput(ListKeysQuery, req.query, 'query');
    const after = query.cursor ? decodeCursor(query.cursor, createdAtIdCursor) : undefined;
    const page = await kt.keys.list(req.params.orgId as string, {
      status: query.status,
      limit: query.limit,
      after: after && { createdAt: new Date(after[0]), id: after[1] },
    });
    const last = page.items.at(-1);
    res.json({
      data: page.items.map(apiKeyJson),
      next_cursor:
        page.hasMore && last ? encodeCursor([last.createdAt.toISOString(), last.id]) : null,
    });
  });

  router.get(`${BASE}/:keyId`, can('keys:read'), async (req, res) => {
    const { orgId, keyId } = keyParams(req);
    res.json(apiKeyJson(await kt.keys.get(orgId, keyId)));
  });

  router.patch(`${BASE}/:keyId`, can('keys:write'), async (req, res) => {
    const { orgId, keyId } = keyParams(req);
    const body = parseInput(UpdateKeyBody, req.body ?? {}, 'body');
    const updated = await kt.keys.update(caller(req), orgId, keyId, {
      ...(body.name !== undefined && { name: body.name }),
      ...(body.scopes !== undefined && { scopes: body.scopes }),
      ...(body.expires_at !== undefined && { expiresAt: body.expires_at }),
      ...(body.allowed_ips !== undefined && { allowedIps: body.allowed_ips }),
      ...(body.rate_limits !== undefined && { rateLimits: body.rate_limits }),
      ...(body.quota !== undefined && { quota: body.quota }),
    });
    res.json(apiKeyJson(updated));
  });

  router.post(`${BASE}/:keyId/rotate`, can('keys:write'), async (req, res) => {
    const { orgId, keyId } = keyParams(req);
    const body = parseInput(RotateKeyBody, req.body ?? {}, 'body');
    const rotated = await kt.keys.rotate(caller(req), orgId, keyId, body.overlap_seconds ?? 0);
    res.status(201).json({
      key: rotated.plaintext,
      api_key: apiKeyJson(rotated.apiKey),
      previous: apiKeyJson(rotated.previous),
    });
  });

  router.delete(`${BASE}/:keyId`, can('keys:write'), async (req, res) => {
    const { orgId, keyId } = keyParams(req);
    const query = parseInput(RevokeQuery, req.query, 'query');
    const revoked = await kt.keys.revoke(caller(req), orgId, keyId, query.reason ?? null);
    res.json({ api_key: apiKeyJson(revoked) });
  });

  return router;
}
