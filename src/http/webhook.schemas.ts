/** Request and response schemas of the webhook endpoints (SPEC §10). */
import { z } from 'zod';
import { WebhookErrorCategory } from '../webhooks/delivery-errors.ts';
import { DELIVERY_EVENT_TYPES, WEBHOOK_EVENT_TYPES } from '../webhooks/webhooks.types.ts';
import { SafeText } from './safe-input.ts';
import { Limit, Timestamp, Uuid } from './schemas.ts';

const Url = z.string().min(1).max(2048).meta({
  description:
    'https (http only to loopback, with KEYTRAIL_WEBHOOK_ALLOW_LOOPBACK=true); no credentials, no fragment.',
});
const EventTypes = z
  .array(z.enum(WEBHOOK_EVENT_TYPES))
  .min(1)
  .max(WEBHOOK_EVENT_TYPES.length * 2)
  .meta({ description: 'The event types delivered to this endpoint.' });
const Description = SafeText(500);

export const WebhookParams = z.object({ orgId: z.string(), webhookId: z.string() });
export const DeliveryParams = WebhookParams.extend({ deliveryId: z.string() });

export const CreateWebhookBody = z
  .strictObject({
    url: Url,
    event_types: EventTypes,
    description: Description.optional(),
    enabled: z.boolean().optional(),
  })
  .meta({ id: 'CreateWebhookRequest' });

export const UpdateWebhookBody = z
  .strictObject({
    url: Url.optional(),
    event_types: EventTypes.optional(),
    description: Description.optional(),
    enabled: z.boolean().optional().meta({
      description: 'true re-enables an endpoint disabled for failing (its failing spell restarts).',
    }),
  })
  .refine((b) => Object.keys(b).length > 0, {
    message: 'give at least one of url, event_types, description, enabled',
  })
  .meta({ id: 'UpdateWebhookRequest' });

export const WebhookJson = z
  .object({
    id: Uuid,
    url: z.string(),
    description: z.string(),
    event_types: z.array(z.enum(WEBHOOK_EVENT_TYPES)),
    enabled: z.boolean(),
    disabled_reason: z.string().nullable().meta({
      description: '"failing": disabled after failing for 3 days; or disabled by an admin.',
    }),
    failing_since: Timestamp.nullable().meta({
      description: 'The first failed attempt since the last success.',
    }),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'Webhook' });

export const WebhookListJson = z.object({ data: z.array(WebhookJson) }).meta({ id: 'WebhookList' });

const Secret = z.string().meta({
  description: 'The signing secret (whsec_…), shown only in this response. Store it now.',
});

export const CreatedWebhookJson = z
  .object({ webhook: WebhookJson, secret: Secret })
  .meta({ id: 'CreatedWebhook' });

export const RotatedSecretJson = z
  .object({
    secret: Secret,
    previous_secret_expires_at: Timestamp.meta({
      description:
        'Until then deliveries carry a signature by the replaced secret too (as by any other rotated away within its own 24 h).',
    }),
  })
  .meta({ id: 'RotatedWebhookSecret' });

export const DeliveriesQuery = z.strictObject({
  limit: Limit,
  cursor: z.string().max(500).optional(),
});

export const DeliveryJson = z
  .object({
    id: Uuid,
    message_id: Uuid.meta({ description: 'The webhook-id header: the same on every attempt.' }),
    event_type: z.enum(DELIVERY_EVENT_TYPES).meta({
      description: 'The event’s type; webhook.test for a test event (“Send test event”).',
    }),
    status: z.enum(['queued', 'pending', 'succeeded', 'failed', 'skipped']).meta({
      description:
        'queued/pending: on its way (pending also between retries); failed: given up; skipped: the endpoint was disabled.',
    }),
    attempt_count: z.number().int(),
    created_at: Timestamp,
    last_attempt_at: Timestamp.nullable(),
    delivered_at: Timestamp.nullable(),
    attempts: z.array(
      z.object({
        attempted_at: Timestamp,
        status_code: z.number().int().nullable(),
        latency_ms: z.number().int(),
        error: WebhookErrorCategory.nullable(),
      }),
    ),
  })
  .meta({ id: 'WebhookDelivery' });

export const DeliveriesPageJson = z
  .object({ data: z.array(DeliveryJson), next_cursor: z.string().nullable() })
  .meta({ id: 'WebhookDeliveryPage' });

export const TestDeliveryJson = z
  .object({ message_id: Uuid, delivery_id: Uuid })
  .meta({ id: 'WebhookTestDelivery' });
