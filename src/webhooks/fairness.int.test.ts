/**
 * The relay and the delivery slots. Deliveries are limited per org in each worker (pg-boss group concurrency): an org whose
 * endpoint hangs holds at most `perOrgConcurrency` of the delivery slots, and other orgs' events
 * still go out at once.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { createKey, createOrg } from '../testing/factories.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { startReceiver, type Receiver } from '../testing/receiver.ts';
import { subscribe, webhookTestConfig } from '../testing/webhooks.ts';
import { createWebhookWorker } from './delivery.worker.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let worker: Worker;
let hanging: Receiver;
let healthy: Receiver;
beforeAll(async () => {
  const webhooks = { ...webhookTestConfig.webhooks, concurrency: 6, perOrgConcurrency: 2 };
  app = await startTestApp(dbUrl(), { config: { webhooks } });
  worker = await startWorker(app.kt);
  hanging = await startReceiver(() => 'hang');
  healthy = await startReceiver();
});
afterAll(async () => {
  hanging.release();
  await worker.stop();
  await app.close();
  await Promise.all([hanging.close(), healthy.close()]);
});

describe('delivery slots', { timeout: 60_000 }, () => {
  it("keep one org's hanging endpoint to its share, so another org's event goes out at once", async () => {
    const slow = await createOrg(app.client, 'Slow');
    await subscribe(app.client, slow, hanging.url, ['key.created']);
    for (let i = 0; i < 6; i++) await createKey(app.client, slow, { name: `slow ${i}` });
    // Two of its six deliveries are in flight (held open by the receiver), the rest wait.
    await waitFor(() => hanging.received.length === 2, { timeoutMs: 20_000 });
    const fast = await createOrg(app.client, 'Fast');
    await subscribe(app.client, fast, healthy.url, ['key.created']);
    const started = Date.now();
    await createKey(app.client, fast, { name: 'fast' });
    // Well inside the 10 s the hanging attempts hold their slots.
    await waitFor(() => healthy.received.length === 1, { timeoutMs: 8_000 });
    expect(Date.now() - started).toBeLessThan(8_000);
    expect(hanging.received).toHaveLength(2);
  });

  it('relays each queued delivery into exactly one job, however many relays race', async () => {
    const org = await createOrg(app.client, 'Relays');
    await subscribe(app.client, org, healthy.url, ['key.created']);
    const before = healthy.received.length;
    const boss = await app.kt.queue();
    const relays = [createWebhookWorker(app.kt, boss), createWebhookWorker(app.kt, boss)];
    let creating = true;
    // Two more relays beside the worker's own, each claiming as fast as it can.
    const racing = relays.map(async (relay) => {
      while (creating) await relay.relayOnce();
    });
    await Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; i < 8; i++) await createKey(app.client, org, { name: `r${w}-${i}` });
      }),
    );
    creating = false;
    await Promise.all(racing);
    await waitFor(() => healthy.received.length === before + 32, { timeoutMs: 20_000 });
    const ids = healthy.received.slice(before).map((r) => String(r.headers['webhook-id']));
    expect(new Set(ids).size).toBe(32);
    const { rows } = await sql<{ jobs: number }>`
      with d as (select id from webhook_deliveries where org_id = ${org.orgId})
      select count(j.id)::int as jobs from d
      left join pgboss.job j on j.name = 'webhooks.deliver' and j.data->>'delivery_id' = d.id::text
      group by d.id`.execute(app.kt.database.db);
    expect(rows).toHaveLength(32);
    expect(rows.every((r) => r.jobs === 1)).toBe(true);
  });
});
