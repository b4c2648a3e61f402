import { Router, type Request } from 'express';
import type { Keytrail } from '../../keytrail.ts';
import type { KeyIdentity } from '../../keys/keys.types.ts';
import { AppError } from '../../platform/errors.ts';
import { isUuid } from '../../platform/ids.ts';
import type { WebhookEndpoint } from '../../webhooks/webhooks.types.ts';
import { createdAtIdCursor, decodeCursor, encodeCursor } from '../cursor.ts';
import {
  CreateWebhookBody,
  DeliveriesQuery,
  DeliveryParams,
  UpdateWebhookBody,
} from '../webhook.schemas.ts';
import { parseInput } from '../validate.ts';

const BASE = '/api/orgs/:orgId/webhooks';
const ONE = `${BASE}/:webhookId`;

function caller(req: Request): KeyIdentity {
  if (!req.apiKey) throw new AppError('unauthenticated');
  return req.apiKey;
}

/** A malformed id cannot name an existing endpoint or delivery: the same 404 as an unknown one. */
function ids(req: Request) {
  const p = parseInput(DeliveryParams.partial({ deliveryId: true }), req.params, 'path');
  if (!isUuid(p.webhookId))
    throw new AppError('not_found', { detail: 'webhook endpoint not found' });
  if (p.deliveryId !== undefined && !isUuid(p.deliveryId)) {
    throw new AppError('not_found', { detail: 'delivery not found' });
  }
  return p;
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function webhookJson(e: WebhookEndpoint) {
  return {
    id: e.id,
    url: e.url,
    description: e.description,
    event_types: e.eventTypes,
    enabled: e.enabled,
    disabled_reason: e.disabledReason,
    failing_since: iso(e.failingSince),
    created_at: e.createdAt.toISOString(),
    updated_at: e.updatedAt.toISOString(),
  };
}

/** Webhook endpoints of an org, their deliveries and re-sends (SPEC §10); org:admin only. */
export function webhooksRoutes(kt: Keytrail): Router {
  const router = Router();
  const admin = kt.requireKey({ orgParam: 'orgId', scopes: ['org:admin'] });
  const hooks = kt.webhooks;

  router.post(BASE, admin, async (req, res) => {
    const body = parseInput(CreateWebhookBody, req.body ?? {}, 'body');
    const { endpoint, secret } = await hooks.create(caller(req), req.params.orgId as string, {
      url: body.url,
      eventTypes: body.event_types,
      description: body.description,
      enabled: body.enabled,
    });
    res.status(201).json({ webhook: webhookJson(endpoint), secret });
  });

  router.get(BASE, admin, async (req, res) => {
    res.json({ data: (await hooks.list(req.params.orgId as string)).map(webhookJson) });
  });

  router.get(ONE, admin, async (req, res) => {
    const { orgId, webhookId } = ids(req);
    res.json(webhookJson(await hooks.get(orgId, webhookId)));
  });

  router.patch(ONE, admin, async (req, res) => {
    const { orgId, webhookId } = ids(req);
    const body = parseInput(UpdateWebhookBody, req.body ?? {}, 'body');
    const updated = await hooks.update(caller(req), orgId, webhookId, {
      ...(body.url !== undefined && { url: body.url }),
      ...(body.description !== undefined && { description: body.description }),
      ...(body.event_types !== undefined && { eventTypes: body.event_types }),
      ...(body.enabled !== undefined && { enabled: body.enabled }),
    });
    res.json(webhookJson(updated));
  });

  router.delete(ONE, admin, async (req, res) => {
    const { orgId, webhookId } = ids(req);
    await hooks.remove(caller(req), orgId, webhookId);
    res.status(204).end();
  });

  router.post(`${ONE}/rotate-secret`, admin, async (req, res) => {
    const { orgId, webhookId } = ids(req);
    const rotated = await hooks.rotateSecret(caller(req), orgId, webhookId);
    res.json({
      secret: rotated.secret,
      previous_secret_expires_at: rotated.previousSecretExpiresAt.toISOString(),
    });
  });

  router.get(`${ONE}/deliveries`, admin, async (req, res) => {
    const { orgId, webhookId } = ids(req);
    const query = parseInput(DeliveriesQuery, req.query, 'query');
    const before = query.cursor ? decodeCursor(query.cursor, createdAtIdCursor) : undefined;
    const rows = await hooks.deliveries(orgId, webhookId, {
      limit: query.limit + 1,
      before: before && { createdAt: new Date(before[0]), id: before[1] },
    });
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    res.json({
      data: page.map((d) => ({
        id: d.id,
        message_id: d.message_id,
        event_type: d.type,
        status: d.status,
        attempt_count: d.attempts,
        created_at: d.created_at.toISOString(),
        last_attempt_at: iso(d.last_attempt_at),
        delivered_at: iso(d.delivered_at),
        attempts: d.log.map((a) => ({
          attempted_at: a.attempted_at.toISOString(),
          status_code: a.status_code,
          latency_ms: a.latency_ms,
          error: a.error,
        })),
      })),
      next_cursor:
        rows.length > query.limit && last
          ? encodeCursor([last.created_at.toISOString(), last.id])
          : null,
    });
  });

  router.post(`${ONE}/test`, admin, async (req, res) => {
    const { orgId, webhookId } = ids(req);
    const sent = await hooks.sendTest(caller(req), orgId, webhookId);
    res.status(202).json({ message_id: sent.messageId, delivery_id: sent.deliveryId });
  });

  router.post(`${ONE}/deliveries/:deliveryId/resend`, admin, async (req, res) => {
    const { orgId, webhookId, deliveryId } = ids(req);
    await hooks.resend(caller(req), orgId, webhookId, deliveryId as string);
    res.status(202).json({ status: 'queued' });
  });
  return router;
}
