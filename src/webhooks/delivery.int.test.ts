/**
 * Webhook deliveries end to end (SPEC §10): real key changes, the outbox, the relay, pg-boss,
 * and a real local HTTP receiver that checks signatures with the `standardwebhooks` package.
 */
import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { createWebhookWorker } from './delivery.worker.ts';
import { auditExpiredKeys } from '../keys/keys.expiry.ts';
import { TestClock } from '../testing/clock.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import {
  observeFor,
  startTestApp,
  useTestDatabase,
  waitFor,
  type TestApp,
} from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';
import { startReceiver, type Received, type Receiver } from '../testing/receiver.ts';
import { subscribe as subscribeTo, verifyPayload, webhookTestConfig } from '../testing/webhooks.ts';

const dbUrl = useTestDatabase();
const clock = new TestClock();
let app: TestApp;
let worker: Worker;
const receivers: Receiver[] = [];
beforeAll(async () => {
  app = await startTestApp(dbUrl(), { clock, config: webhookTestConfig });
  worker = await startWorker(app.kt);
});
afterAll(async () => {
  for (const r of receivers) r.release();
  await worker.stop();
  await app.close();
  await Promise.all(receivers.map((r) => r.close()));
});

async function receiver(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
  const r = await startReceiver(...args);
  receivers.push(r);
  return r;
}

const hooks = (org: TestOrg) => `/api/orgs/${org.orgId}/webhooks`;
const subscribe = (org: TestOrg, r: Receiver, types?: readonly string[]) =>
  subscribeTo(app.client, org, r.url, types);
const verify = verifyPayload;

/** Attempts recorded (of any delivery) after the attempt `after`: sent, failed, and the last id. */
async function attemptsSince(after: number) {
  const { rows } = await sql<{ sent: number; failed: number; last: number }>`
    select count(*) filter (where error is null)::int as sent,
      count(*) filter (where error is not null)::int as failed,
      coalesce(max(id), ${after})::int8 as last
    from webhook_attempts where id > ${after}`.execute(app.kt.database.db);
  const row = rows[0] ?? { sent: 0, failed: 0, last: after };
  return { sent: row.sent, failed: row.failed, last: Number(row.last) };
}

async function deliveries(org: TestOrg, id: string, query = '') {
  const res = await app.client.get(`${hooks(org)}/${id}/deliveries${query}`, {
    key: org.adminKey,
  });
  expect(res.status, res.text).toBe(200);
  return res.body as {
    data: {
      id: string;
      message_id: string;
      event_type: string;
      status: string;
      attempt_count: number;
      attempts: { status_code: number | null; latency_ms: number; error: string | null }[];
    }[];
    next_cursor: string | null;
  };
}

describe('webhook deliveries', { timeout: 60_000 }, () => {
  it('delivers each key event, signed per Standard Webhooks, with its own webhook-id', async () => {
    const org = await createOrg(app.client, 'Deliveries');
    const r = await receiver();
    const { id, secret } = await subscribe(org, r);
    const keys = `/api/orgs/${org.orgId}/api-keys`;
    const key = await createKey(app.client, org, { name: 'k1' });
    await app.client.patch(`${keys}/${key.id}`, { key: org.adminKey, body: { name: 'k1b' } });
    const rotated = await app.client.post(`${keys}/${key.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 0 },
    });
    await app.client.delete(`${keys}/${rotated.body.api_key.id as string}`, {
      key: org.adminKey,
    });
    const expiring = await createKey(app.client, org, {
      name: 'short',
      expires_at: new Date(Date.now() + 60_000).toISOString(),
    });
    clock.advance(120_000);
    expect(await auditExpiredKeys(app.kt.database.db, { now: clock.now(), dryRun: false })).toBe(1);
    clock.advance(-120_000);
    // Dormant: a notifying policy over a key created 40 days ago and never used.
    const idle = await createKey(app.client, org, { name: 'idle' });
    await app.client.put(`/api/orgs/${org.orgId}/policies/dormant-keys`, {
      key: org.adminKey,
      body: { enabled: true, after_days: 30, action: 'notify' },
    });
    await sql`update api_keys set created_at = now() - interval '40 days'
      where id = ${idle.id}`.execute(app.kt.database.db);
    await app.kt.dormantPolicies.runAll();

    const want = ['key.created', 'key.updated', 'key.rotated', 'key.revoked', 'key.expired'];
    await waitFor(() => want.every((t) => r.received.some((x) => verify(secret, x).type === t)), {
      timeoutMs: 20_000,
    });
    await waitFor(() => r.received.some((x) => verify(secret, x).type === 'key.dormant'));
    const byType = new Map(r.received.map((x) => [verify(secret, x).type, verify(secret, x)]));
    expect(byType.get('key.updated')?.data.key).toMatchObject({ id: key.id, name: 'k1b' });
    expect(byType.get('key.rotated')?.data.key).toMatchObject({ id: key.id, status: 'revoked' });
    expect(byType.get('key.revoked')?.data.key.id).toBe(rotated.body.api_key.id);
    expect(byType.get('key.expired')?.data).toMatchObject({
      key: { id: expiring.id },
      actor: { type: 'system' },
    });
    expect(byType.get('key.dormant')?.data).toMatchObject({
      key: { id: idle.id },
      actor: { type: 'policy' },
    });
    expect(byType.get('key.created')?.data).toMatchObject({
      org_id: org.orgId,
      actor: { type: 'key', key_id: org.adminKeyId },
    });
    for (const x of r.received) {
      expect(x.headers['content-type']).toBe('application/json');
      expect(Number(x.headers['webhook-timestamp']) * 1000).toBeGreaterThan(Date.now() - 60_000);
      expect(Date.parse(verify(secret, x).timestamp)).toBeGreaterThan(Date.now() - 3_600_000);
    }
    // One message, one id: no repeats, and the ids are the deliveries' message ids.
    expect(new Set(r.ids()).size).toBe(r.received.length);
    // Each settles once the receiver's answer is recorded (just after the receiver saw it).
    const listed = await waitFor(async () => {
      const page = await deliveries(org, id, '?limit=100');
      return page.data.every((d) => d.status === 'succeeded') ? page : null;
    });
    expect(new Set(listed.data.map((d) => d.message_id))).toEqual(new Set(r.ids()));
    expect(listed.data.every((d) => d.attempt_count === 1)).toBe(true);
  });

  it('sends a test event to one endpoint alone, signed, and logs it in its deliveries', async () => {
    const org = await createOrg(app.client, 'Test events');
    const r = await receiver();
    const other = await receiver();
    const { id, secret } = await subscribe(org, r, ['key.revoked']);
    await subscribe(org, other, ['key.revoked']);
    const sent = await app.client.post(`${hooks(org)}/${id}/test`, { key: org.adminKey });
    expect(sent.status).toBe(202);

    await waitFor(() => r.received.length === 1, { timeoutMs: 20_000 });
    const event = verify(secret, r.received[0] as Received);
    expect(event).toMatchObject({
      type: 'webhook.test',
      data: { org_id: org.orgId, key: null, actor: { type: 'key', key_id: org.adminKeyId } },
    });
    const log = await deliveries(org, id);
    expect(log.data[0]).toMatchObject({
      id: sent.body.delivery_id,
      message_id: sent.body.message_id,
      event_type: 'webhook.test',
    });
    await waitFor(async () => (await deliveries(org, id)).data[0]?.status === 'succeeded');
    expect(other.received).toEqual([]);
    // One at a time: a second while the first is on its way (its receiver hangs) is refused.
    const slow = await receiver(() => 'hang');
    const hung = await subscribe(org, slow, ['key.revoked']);
    const test = () => app.client.post(`${hooks(org)}/${hung.id}/test`, { key: org.adminKey });
    expect((await test()).status).toBe(202);
    await waitFor(() => slow.received.length === 1, { timeoutMs: 20_000 });
    const again = await test();
    expectProblem(again, 429, 'rate_limited');
    expect(again.headers.get('retry-after')).toBe('5');
    slow.release();
    // A disabled endpoint gets none.
    await app.client.patch(`${hooks(org)}/${id}`, { key: org.adminKey, body: { enabled: false } });
    const refused = await app.client.post(`${hooks(org)}/${id}/test`, { key: org.adminKey });
    expectProblem(refused, 422, 'unprocessable');
  });

  it('fails verification for a tampered body, a wrong secret, and an old (replayed) timestamp', async () => {
    const org = await createOrg(app.client, 'Verify');
    const r = await receiver();
    const { secret } = await subscribe(org, r, ['key.created']);
    await createKey(app.client, org);
    await waitFor(() => r.received.length === 1);
    const got = r.received[0] as Received;
    const headers = got.headers as Record<string, string>;
    expect(() => verify(secret, got)).not.toThrow();
    expect(() => new Webhook(secret).verify(got.body.replace('key.', 'kex.'), headers)).toThrow();
    const other = (await subscribe(org, r, ['key.revoked'])).secret;
    expect(() => new Webhook(other).verify(got.body, headers)).toThrow();
    // Signed correctly, but ten minutes old: the receiver's replay window refuses it.
    const old = new Date(Date.now() - 600_000);
    const id = headers['webhook-id'] as string;
    const replay = {
      ...headers,
      'webhook-timestamp': String(Math.floor(old.getTime() / 1000)),
      'webhook-signature': new Webhook(secret).sign(id, old, got.body),
    };
    expect(() => new Webhook(secret).verify(got.body, replay)).toThrow(/too old/i);
  });

  it('retries a receiver that answers 500 three times, then delivers exactly once more', async () => {
    const org = await createOrg(app.client, 'Retries');
    const r = await receiver((n) => (n < 3 ? 500 : 200));
    const { id, secret } = await subscribe(org, r, ['key.created']);
    const metric = async (result: string) => {
      const text = (await app.client.get('/metrics')).text;
      const m = new RegExp(`keytrail_webhook_deliveries_total\\{result="${result}"\\} (\\d+)`).exec(
        text,
      );
      return Number(m?.[1] ?? 0);
    };
    // The counters count every delivery's attempts, another test's late retries included: they
    // are checked against the attempts recorded since this point.
    const lastAttempt = await attemptsSince(0);
    const before = {
      retried: await metric('retried'),
      failed: await metric('failed'),
      sent: await metric('sent'),
    };
    await createKey(app.client, org);
    await waitFor(() => r.received.length === 4, { timeoutMs: 30_000 });
    await waitFor(async () => (await deliveries(org, id)).data[0]?.status === 'succeeded');
    await observeFor(3_000); // nothing more comes: the 200 settled it
    expect(r.received).toHaveLength(4);
    expect(new Set(r.ids()).size).toBe(1);
    for (const x of r.received) expect(verify(secret, x).type).toBe('key.created');
    const [delivery] = (await deliveries(org, id)).data;
    expect(delivery?.attempt_count).toBe(4);
    expect(delivery?.attempts.map((a) => [a.status_code, a.error])).toEqual([
      [500, 'http_error'],
      [500, 'http_error'],
      [500, 'http_error'],
      [200, null],
    ]);
    expect(delivery?.attempts.every((a) => Number.isInteger(a.latency_ms))).toBe(true);
    const counted = async () => ({
      sent: (await metric('sent')) - before.sent,
      failed: (await metric('retried')) + (await metric('failed')) - before.retried - before.failed,
    });
    await waitFor(async () => {
      const [now, recorded] = [await counted(), await attemptsSince(lastAttempt.last)];
      return now.sent === recorded.sent && now.failed === recorded.failed;
    });
    const now = await counted();
    expect(now.sent).toBeGreaterThanOrEqual(1);
    expect(now.failed).toBeGreaterThanOrEqual(3);
    expect((await metric('retried')) - before.retried).toBeGreaterThanOrEqual(3);
    expect((await app.client.get('/metrics')).text).toMatch(
      /keytrail_webhook_delivery_lag_seconds_count [1-9]/,
    );
  });

  it('never follows a redirect', async () => {
    const org = await createOrg(app.client, 'Redirect');
    const target = await receiver();
    const r = await receiver(() => ({ redirect: target.url }));
    const { id } = await subscribe(org, r, ['key.created']);
    await createKey(app.client, org);
    await waitFor(async () => (await deliveries(org, id)).data[0]?.attempts.length === 2, {
      timeoutMs: 20_000,
    });
    const [delivery] = (await deliveries(org, id)).data;
    expect(delivery?.attempts[0]).toMatchObject({
      status_code: 302,
      error: 'redirect',
    });
    expect(target.received).toHaveLength(0);
    await app.client.delete(`${hooks(org)}/${id}`, { key: org.adminKey });
  });

  it('disables an endpoint failing for 3 days, audits it, and sends it nothing more', async () => {
    const org = await createOrg(app.client, 'Failing');
    const r = await receiver(() => 503);
    const { id } = await subscribe(org, r, ['key.created', 'key.revoked']);
    await createKey(app.client, org);
    await waitFor(() => r.received.length >= 1);
    const hook = `${hooks(org)}/${id}`;
    const read = async () => (await app.client.get(hook, { key: org.adminKey })).body;
    await waitFor(async () => (await read()).failing_since);
    const attempts = async () => (await deliveries(org, id)).data[0]?.attempt_count ?? 0;
    const db = app.kt.database.db;
    // A spell that went quiet for a day (a message given up long ago) is not "failing for 3
    // days": the next failure starts a new spell.
    await sql`update webhook_endpoints set failing_since = now() - interval '4 days',
      last_failure_at = now() - interval '1 day' where id = ${id}`.execute(db);
    const tried = await attempts();
    await waitFor(async () => (await attempts()) > tried, { timeoutMs: 20_000 });
    const restarted = await read();
    expect(restarted.enabled).toBe(true);
    expect(Date.parse(restarted.failing_since)).toBeGreaterThan(Date.now() - 60_000);
    // Failing without a pause since 3 days ago: the next failure disables it.
    await sql`update webhook_endpoints set failing_since = now() - interval '3 days 1 minute'
      where id = ${id}`.execute(db);
    await waitFor(async () => (await read()).enabled === false, { timeoutMs: 20_000 });
    const endpoint = (await app.client.get(hook, { key: org.adminKey })).body;
    expect(endpoint.disabled_reason).toBe('failing');
    const audit = await app.client.get(
      `/api/orgs/${org.orgId}/audit-events?action=webhook.disabled`,
      { key: org.adminKey },
    );
    expect(audit.body.data).toHaveLength(1);
    expect(audit.body.data[0]).toMatchObject({
      actor: { type: 'system' },
      target: { type: 'webhook', id },
      details: { url: `${new URL(r.url).origin}/…`, last_error: 'http_error' },
    });
    expect((await deliveries(org, id)).data[0]?.status).toBe('failed');
    // Re-sending to a disabled endpoint is refused; new events are not even queued.
    const delivery = (await deliveries(org, id)).data[0]?.id as string;
    expectProblem(
      await app.client.post(`${hook}/deliveries/${delivery}/resend`, { key: org.adminKey }),
      422,
      'unprocessable',
    );
    const seen = r.received.length;
    await createKey(app.client, org);
    await observeFor(1_500);
    expect((await deliveries(org, id)).data).toHaveLength(1);
    expect(r.received).toHaveLength(seen);
    // Enabled again: a fresh start.
    const enabled = await app.client.patch(hook, { key: org.adminKey, body: { enabled: true } });
    expect(enabled.body).toMatchObject({
      enabled: true,
      disabled_reason: null,
      failing_since: null,
    });
  });

  it('re-sends a delivery with the same webhook-id, and signs with both secrets after a rotation', async () => {
    const org = await createOrg(app.client, 'Resend');
    const r = await receiver();
    const { id, secret } = await subscribe(org, r, ['key.created']);
    await createKey(app.client, org);
    await waitFor(() => r.received.length === 1);
    const hook = `${hooks(org)}/${id}`;
    await waitFor(async () => (await deliveries(org, id)).data[0]?.status === 'succeeded');
    const first = (await deliveries(org, id)).data[0];
    const resent = await app.client.post(`${hook}/deliveries/${first?.id ?? ''}/resend`, {
      key: org.adminKey,
    });
    expect(resent.status).toBe(202);
    const audit = await app.client.get(
      `/api/orgs/${org.orgId}/audit-events?action=webhook.resent`,
      {
        key: org.adminKey,
      },
    );
    expect(audit.body.data[0]).toMatchObject({ details: { delivery_id: first?.id } });
    await waitFor(() => r.received.length === 2);
    expect(r.ids()[1]).toBe(r.ids()[0]);
    await waitFor(async () => (await deliveries(org, id)).data[0]?.attempt_count === 2);

    const rotated = await app.client.post(`${hook}/rotate-secret`, { key: org.adminKey });
    await createKey(app.client, org);
    await waitFor(() => r.received.length === 3);
    const latest = r.received[2] as Received;
    expect(String(latest.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(() => verify(rotated.body.secret as string, latest)).not.toThrow();
    expect(() => verify(secret, latest)).not.toThrow();
    // Pages of deliveries, newest first.
    const page = await deliveries(org, id, '?limit=1');
    expect(page.data).toHaveLength(1);
    expect(page.next_cursor).not.toBeNull();
    const next = await deliveries(org, id, `?limit=1&cursor=${page.next_cursor ?? ''}`);
    expect(next.data[0]?.id).toBe(first?.id);
    expect(next.next_cursor).toBeNull();
  });

  it('lets only the current job deliver, and marks failed a delivery pg-boss gave up on', async () => {
    const org = await createOrg(app.client, 'Jobs');
    const r = await receiver(() => 'hang');
    const { id } = await subscribe(org, r, ['key.created']);
    await createKey(app.client, org);
    await waitFor(() => r.received.length === 1);
    const [delivery] = (await deliveries(org, id)).data;
    const { rows } = await sql<{ job_id: string }>`select job_id from webhook_deliveries
      where id = ${delivery?.id ?? ''}`.execute(app.kt.database.db);
    const jobId = rows[0]?.job_id ?? '';
    const hooks_ = createWebhookWorker(app.kt, await app.kt.queue());
    // A stale job (the delivery was handed to a newer one, e.g. by a re-send) sends nothing.
    const stale = { delivery_id: delivery?.id ?? '', job_id: crypto.randomUUID() };
    await hooks_.deliver({ id: stale.job_id, data: stale, retryCount: 0, retryLimit: 4 });
    expect(r.received).toHaveLength(1);
    // pg-boss gave up on the current job by itself (expired or killed on its last try).
    await hooks_.abandoned({ data: { delivery_id: delivery?.id ?? '', job_id: jobId } });
    expect((await deliveries(org, id)).data[0]?.status).toBe('failed');
    r.release();
    await app.client.delete(`${hooks(org)}/${id}`, { key: org.adminKey });
  });
});
