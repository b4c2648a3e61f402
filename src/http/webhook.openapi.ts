/** The webhook operations of the OpenAPI document (SPEC §10). */
import { z } from 'zod';
import type { Op } from './openapi.ts';
import { Uuid } from './schemas.ts';
import * as w from './webhook.schemas.ts';

const ORG = { orgId: Uuid };
const ONE = { orgId: Uuid, webhookId: Uuid };
const BASE = '/api/orgs/{orgId}/webhooks';
const scope = 'org:admin';
const webhook = { status: 200, schema: w.WebhookJson, description: 'The endpoint' };

export const WEBHOOK_OPERATIONS: Op[] = [
  {
    method: 'post',
    path: BASE,
    operationId: 'createWebhook',
    summary: 'Add a webhook endpoint (audited); its signing secret is in this response only',
    scope,
    params: z.object(ORG),
    body: w.CreateWebhookBody,
    ok: { status: 201, schema: w.CreatedWebhookJson, description: 'The endpoint and its secret' },
    errors: [400, 401, 403, 404, 422],
  },
  {
    method: 'get',
    path: BASE,
    operationId: 'listWebhooks',
    summary: 'The org’s webhook endpoints',
    scope,
    params: z.object(ORG),
    ok: { status: 200, schema: w.WebhookListJson, description: 'Every endpoint of the org' },
    errors: [401, 403, 404],
  },
  {
    method: 'get',
    path: `${BASE}/{webhookId}`,
    operationId: 'getWebhook',
    summary: 'Read one webhook endpoint (never its secret)',
    scope,
    params: z.object(ONE),
    ok: webhook,
    errors: [401, 403, 404],
  },
  {
    method: 'patch',
    path: `${BASE}/{webhookId}`,
    operationId: 'updateWebhook',
    summary: 'Change an endpoint’s URL, event types, description, or enable/disable it (audited)',
    scope,
    params: z.object(ONE),
    body: w.UpdateWebhookBody,
    ok: webhook,
    errors: [400, 401, 403, 404],
  },
  {
    method: 'delete',
    path: `${BASE}/{webhookId}`,
    operationId: 'deleteWebhook',
    summary: 'Delete an endpoint and its delivery history (audited)',
    scope,
    params: z.object(ONE),
    ok: { status: 204, schema: z.null(), description: 'Deleted' },
    errors: [401, 403, 404],
  },
  {
    method: 'post',
    path: `${BASE}/{webhookId}/rotate-secret`,
    operationId: 'rotateWebhookSecret',
    summary: 'A new signing secret (shown once); the previous one also signs for 24 h',
    scope,
    params: z.object(ONE),
    ok: { status: 200, schema: w.RotatedSecretJson, description: 'The new secret' },
    errors: [401, 403, 404, 422],
  },
  {
    method: 'post',
    path: `${BASE}/{webhookId}/test`,
    operationId: 'sendWebhookTest',
    summary:
      'Send a webhook.test event to this endpoint alone, signed and retried like any delivery',
    scope,
    params: z.object(ONE),
    ok: { status: 202, schema: w.TestDeliveryJson, description: 'Queued for delivery' },
    errors: [401, 403, 404, 422, 429],
  },
  {
    method: 'get',
    path: `${BASE}/{webhookId}/deliveries`,
    operationId: 'listWebhookDeliveries',
    summary: 'Deliveries to an endpoint, newest first, with every attempt',
    scope,
    params: z.object(ONE),
    query: w.DeliveriesQuery,
    ok: { status: 200, schema: w.DeliveriesPageJson, description: 'A page of deliveries' },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'post',
    path: `${BASE}/{webhookId}/deliveries/{deliveryId}/resend`,
    operationId: 'resendWebhookDelivery',
    summary: 'Send a settled delivery again (same message, same webhook-id)',
    scope,
    params: z.object({ ...ONE, deliveryId: Uuid }),
    ok: {
      status: 202,
      schema: z.object({ status: z.literal('queued') }),
      description: 'Queued for delivery',
    },
    errors: [401, 403, 404, 422],
  },
];
