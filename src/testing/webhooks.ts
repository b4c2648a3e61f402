/** Webhook test helpers: a test config that may call loopback, subscribing, verifying. */
import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import { WEBHOOK_DEFAULTS, type Config } from '../platform/config.ts';
import { WEBHOOK_EVENT_TYPES } from '../webhooks/webhooks.types.ts';
import type { TestClient } from './client.ts';
import type { TestOrg } from './factories.ts';
import type { Received } from './receiver.ts';

/** Loopback allowed (the receiver is local), retries of 1–2 s, a relay poll of 0.5 s. */
export const webhookTestConfig: Pick<Config, 'webhooks'> = {
  webhooks: {
    ...WEBHOOK_DEFAULTS,
    retry: { limit: 4, delaySeconds: 1, maxDelaySeconds: 2 },
    relayPollMs: 500,
    addresses: { allowLoopback: true, allowedNetworks: [] },
  },
};

export async function subscribe(
  client: TestClient,
  org: TestOrg,
  url: string,
  eventTypes: readonly string[] = WEBHOOK_EVENT_TYPES,
): Promise<{ id: string; secret: string }> {
  const res = await client.post(`/api/orgs/${org.orgId}/webhooks`, {
    key: org.adminKey,
    body: { url, event_types: eventTypes },
  });
  expect(res.status, res.text).toBe(201);
  return { id: res.body.webhook.id, secret: res.body.secret };
}

export type Payload = {
  type: string;
  timestamp: string;
  data: {
    org_id: string;
    key: { id: string; status: string; name: string };
    actor: { type: string };
    details: Record<string, unknown>;
  };
};

/** The payload of a received delivery, once its signature verified (throws otherwise). */
export const verifyPayload = (secret: string, r: Received): Payload =>
  new Webhook(secret).verify(r.body, r.headers as Record<string, string>) as Payload;
