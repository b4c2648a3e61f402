/**
 * SPEC §10: a worker killed during a delivery neither loses it nor sends it more than the
 * documented at-least-once, and every copy carries the same webhook-id. The worker is a real
 * `keytrail worker` process, SIGKILLed while the receiver holds the request open; the API under
 * test runs no worker.
 */
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createOrg } from '../src/testing/factories.ts';
import {
  observeFor,
  startTestApp,
  useTestDatabase,
  waitFor,
  type TestApp,
} from '../src/testing/harness.ts';
import { startReceiver, type Receiver } from '../src/testing/receiver.ts';
import { webhookTestConfig } from '../src/testing/webhooks.ts';
import { killHard, spawnWorker, stopGracefully, type WorkerProcess } from './faults-workers.ts';

const WORKER_ENV = {
  KEYTRAIL_WEBHOOK_ALLOW_LOOPBACK: 'true',
  KEYTRAIL_WEBHOOK_RETRY_DELAY_SECONDS: '1',
};
const dbUrl = useTestDatabase();
let app: TestApp;
let receiver: Receiver;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  app = await startTestApp(dbUrl(), { config: webhookTestConfig });
  // The first request is held open (the worker dies waiting for it); later ones get 200.
  receiver = await startReceiver((n) => (n === 0 ? 'hang' : 200));
});
afterAll(async () => {
  await Promise.all(workers.map((w) => killHard(w)));
  receiver.release();
  await receiver.close();
  await app.close();
});

describe('a worker SIGKILLed during a webhook delivery', () => {
  it('delivers it again with the same webhook-id, and only once more', async () => {
    const org = await createOrg(app.client, 'Kill');
    const created = await app.client.post(`/api/orgs/${org.orgId}/webhooks`, {
      key: org.adminKey,
      body: { url: receiver.url, event_types: ['key.created'] },
    });
    expect(created.status).toBe(201);
    const first = spawnWorker(dbUrl(), 'kt-hook-1', WORKER_ENV);
    workers.push(first);
    await first.ready;
    await createKey(app.client, org, { name: 'announced' });
    await waitFor(() => receiver.received.length === 1, { timeoutMs: 20_000 });
    await killHard(first);

    const second = spawnWorker(dbUrl(), 'kt-hook-2', WORKER_ENV);
    workers.push(second);
    await second.ready;
    // The killed worker's job: its heartbeat (10 s) lapses, a supervise pass (2 s) fails it,
    // the retry waits 1–2 s.
    await waitFor(() => receiver.received.length === 2, { timeoutMs: 90_000, intervalMs: 100 });
    const id = created.body.webhook.id as string;
    const settled = await waitFor(async () => {
      const res = await app.client.get(`/api/orgs/${org.orgId}/webhooks/${id}/deliveries`, {
        key: org.adminKey,
      });
      const d = res.body.data[0] as { status: string; attempt_count: number } | undefined;
      return d?.status === 'succeeded' ? d : null;
    });
    // The killed attempt recorded nothing; the one that answered 200 is the one on record.
    expect(settled.attempt_count).toBe(1);
    await observeFor(3_000); // nothing more comes once it is settled
    expect(receiver.received).toHaveLength(2);
    const [a, b] = receiver.ids();
    expect(a).toBe(b);
    const secret = created.body.secret as string;
    for (const r of receiver.received) {
      expect(() =>
        new Webhook(secret).verify(r.body, r.headers as Record<string, string>),
      ).not.toThrow();
    }
    await stopGracefully(second);
    expect(second.child.exitCode, second.tail()).toBe(0);
  }, 180_000);
});
