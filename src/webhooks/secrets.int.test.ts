/**
 * Secret rotation (SPEC §10): every secret rotated away keeps signing deliveries for its own
 * 24 hours, however many rotations follow within them (up to a bound), then stops.
 */
import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMaintenance } from '../../workers/maintenance.ts';
import { startWorker, type Worker } from '../../workers/main.ts';
import { TestClock } from '../testing/clock.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';
import { startReceiver, type Received, type Receiver } from '../testing/receiver.ts';
import { subscribe, webhookTestConfig } from '../testing/webhooks.ts';
import { MAX_PREVIOUS_SECRETS } from './webhooks.service.ts';

const HOUR = 3_600_000;
const dbUrl = useTestDatabase();
const clock = new TestClock();
let app: TestApp;
let worker: Worker;
let r: Receiver;
beforeAll(async () => {
  app = await startTestApp(dbUrl(), { clock, config: webhookTestConfig });
  worker = await startWorker(app.kt);
  r = await startReceiver();
});
afterAll(async () => {
  await worker.stop();
  await app.close();
  await r.close();
});

/**
 * Whether `secret` signed this delivery. Checked by hand, not with Webhook.verify: the test
 * clock runs hours ahead, and verify refuses a timestamp more than 5 minutes off.
 */
function signedBy(secret: string, got: Received): boolean {
  const id = String(got.headers['webhook-id']);
  const at = new Date(Number(got.headers['webhook-timestamp']) * 1000);
  const expected = new Webhook(secret).sign(id, at, got.body);
  return String(got.headers['webhook-signature']).split(' ').includes(expected);
}

async function rotate(org: TestOrg, id: string): Promise<string> {
  const res = await app.client.post(`/api/orgs/${org.orgId}/webhooks/${id}/rotate-secret`, {
    key: org.adminKey,
  });
  expect(res.status, res.text).toBe(200);
  return res.body.secret as string;
}

/** The delivery of a new key.created event. */
async function nextDelivery(org: TestOrg): Promise<Received> {
  const seen = r.received.length;
  await createKey(app.client, org);
  await waitFor(() => r.received.length > seen);
  return r.received[seen] as Received;
}

describe('webhook secret rotation', { timeout: 60_000 }, () => {
  it('signs with every secret rotated away within 24 h, each until its own overlap ends', async () => {
    const org = await createOrg(app.client, 'Rotations');
    const { id, secret: s0 } = await subscribe(app.client, org, r.url, ['key.created']);
    const s1 = await rotate(org, id);
    clock.advance(12 * HOUR);
    const s2 = await rotate(org, id);
    try {
      const three = await nextDelivery(org);
      expect(String(three.headers['webhook-signature']).split(' ')).toHaveLength(3);
      for (const s of [s0, s1, s2]) expect(signedBy(s, three)).toBe(true);
      // 25 h after the first rotation: s0's day is over, s1's (from the second) is not.
      clock.advance(13 * HOUR);
      const two = await nextDelivery(org);
      expect([s0, s1, s2].map((s) => signedBy(s, two))).toEqual([false, true, true]);
      clock.advance(12 * HOUR);
      const one = await nextDelivery(org);
      expect(String(one.headers['webhook-signature']).split(' ')).toHaveLength(1);
      expect(signedBy(s2, one)).toBe(true);
    } finally {
      clock.offsetMs = 0;
    }
  });

  it(`refuses a rotation while ${MAX_PREVIOUS_SECRETS} rotated secrets still sign`, async () => {
    const org = await createOrg(app.client, 'Rotations bound');
    const { id } = await subscribe(app.client, org, r.url, ['key.created']);
    for (let i = 0; i < MAX_PREVIOUS_SECRETS; i++) await rotate(org, id);
    const refused = await app.client.post(`/api/orgs/${org.orgId}/webhooks/${id}/rotate-secret`, {
      key: org.adminKey,
    });
    expectProblem(refused, 422, 'unprocessable');
    expect(refused.body.detail).toMatch(/rotate again after \d{4}-/);
    try {
      clock.advance(24 * HOUR + 60_000);
      await rotate(org, id);
    } finally {
      clock.offsetMs = 0;
    }
  });

  it('deletes rotated secrets whose overlap has ended in the daily maintenance', async () => {
    const org = await createOrg(app.client, 'Rotations pruned');
    const { id } = await subscribe(app.client, org, r.url, ['key.created']);
    const left = async () => {
      const { rows } = await sql<{ expires_at: Date }>`select expires_at
        from webhook_previous_secrets where endpoint_id = ${id}`.execute(app.kt.database.db);
      return rows.map((row) => row.expires_at.getTime());
    };
    try {
      await rotate(org, id);
      clock.advance(12 * HOUR);
      await rotate(org, id);
      clock.advance(13 * HOUR);
      await runMaintenance(app.kt, { daily: false });
      // The first overlap ended an hour ago; the second has 11 hours to go.
      const [second, ...more] = await left();
      expect(more).toEqual([]);
      expect((second ?? 0) - clock.now().getTime()).toBeGreaterThan(10 * HOUR);
    } finally {
      clock.offsetMs = 0;
    }
  });
});
