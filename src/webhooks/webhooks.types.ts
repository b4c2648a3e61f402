import { AUDIT_ACTIONS } from '../audit/audit.types.ts';

/** The event types an endpoint can subscribe to (SPEC §10). */
export const WEBHOOK_EVENT_TYPES = [
  'key.created',
  'key.updated',
  'key.rotated',
  'key.revoked',
  'key.expired',
  'key.expiring',
  'key.dormant',
  'key.spike',
  'key.revoked_key_used',
  'key.rate_limited',
  'key.quota_low',
  'key.quota_exhausted',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** What "Send test event" delivers: to one endpoint, whatever it subscribes to (never subscribed). */
export const WEBHOOK_TEST_EVENT = 'webhook.test';
/** Every event type a delivery can carry. */
export const DELIVERY_EVENT_TYPES = [...WEBHOOK_EVENT_TYPES, WEBHOOK_TEST_EVENT] as const;

/** Audit actions that are also webhook events: the audit entry and the message share a transaction. */
export const AUDITED_EVENT_TYPES: ReadonlySet<string> = new Set<string>(
  WEBHOOK_EVENT_TYPES.filter((t) => (AUDIT_ACTIONS as readonly string[]).includes(t)),
);

/** One event for the outbox: the key it concerns is read in the same transaction. */
export type OutboxEvent = {
  orgId: string;
  type: WebhookEventType;
  at: Date;
  keyId: string;
  actor: { type: string; key_id?: string | null };
  details: Record<string, unknown>;
};

export type WebhookEndpoint = {
  id: string;
  orgId: string;
  url: string;
  description: string;
  eventTypes: WebhookEventType[];
  enabled: boolean;
  disabledReason: string | null;
  failingSince: Date | null;
  createdAt: Date;
  updatedAt: Date;
};

export type DeliveryStatus = 'queued' | 'pending' | 'succeeded' | 'failed' | 'skipped';

/** The pg-boss queue of deliveries: one job per (message, endpoint) attempt series. */
export const WEBHOOK_DELIVERY_QUEUE = 'webhooks.deliver';
/** Jobs pg-boss failed by itself on their last try (expired, worker killed): marked failed. */
export const WEBHOOK_DEAD_LETTER_QUEUE = 'webhooks.deliver.dead';
/** The channel the outbox notifies on commit: the relay wakes at once. */
export const WEBHOOK_OUTBOX_CHANNEL = 'keytrail_webhook_outbox';
