/**
 * The notices keytrail finds on its own (SPEC §10), delivered to a real receiver: key.expiring
 * (7 days, then 1 day before), key.spike (the flag turning on), key.revoked_key_used (a revoked
 * key still tried, at most once an hour). Each is sent once, however often the finding runs.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { TestClock } from '../testing/clock.ts';
import { createKey, createOrg, reportEvents, type TestOrg } from '../testing/factories.ts';
import {
  observeFor,
  startTestApp,
  useTestDatabase,
  waitFor,
  type TestApp,
} from '../testing/harness.ts';
import { startReceiver, type Receiver } from '../testing/receiver.ts';
import { subscribe, verifyPayload, webhookTestConfig, type Payload } from '../testing/webhooks.ts';
import { noticeLowQuotas, runKeyWatch } from './watch.ts';

const dbUrl = useTestDatabase();
const clock = new TestClock();
let app: TestApp;
let worker: Worker;
const receivers: Receiver[] = [];
beforeAll(async () => {
  app = await startTestApp(dbUrl(), {
    clock,
    config: {
      ...webhookTestConfig,
      usage: { tracking: true, flushIntervalMs: 50, batchSize: 1000, bufferMax: 100_000 },
    },
  });
  worker = await startWorker(app.kt);
});
afterAll(async () => {
  await worker.stop();
  await app.close();
  await Promise.all(receivers.map((r) => r.close()));
});

const watch = () =>
  runKeyWatch(app.kt.database.db, { now: clock.now(), spike: app.kt.config.spike });

type Subscribed = { org: TestOrg; secret: string; receiver: Receiver };

/** The verified payloads of one type an org's receiver got for one key. */
function got(s: Subscribed, type: string, keyId: string): Payload[] {
  return s.receiver.received
    .map((r) => verifyPayload(s.secret, r))
    .filter((p) => p.type === type && p.data.key.id === keyId);
}

/** An org whose endpoint (a receiver of its own) subscribes to `types`. */
async function org(name: string, types: string[]): Promise<Subscribed> {
  const o = await createOrg(app.client, name);
  const receiver = await startReceiver();
  receivers.push(receiver);
  const { secret } = await subscribe(app.client, o, receiver.url, types);
  return { org: o, secret, receiver };
}

describe('notices', { timeout: 60_000 }, () => {
  it('sends key.expiring 7 days and 1 day before expires_at, once each, and again for a new expiry', async () => {
    const sub = await org('Expiring', ['key.expiring']);
    const o = sub.org;
    const key = await createKey(app.client, o, {
      expires_at: new Date(Date.now() + 3 * 86_400_000).toISOString(),
    });
    // Twice: the second run finds nothing new (the worker's own 5-minute run may be either).
    await watch();
    await watch();
    await waitFor(() => got(sub, 'key.expiring', key.id).length === 1);
    clock.advance(2.5 * 86_400_000);
    try {
      await watch();
      await watch();
    } finally {
      clock.advance(-2.5 * 86_400_000);
    }
    await waitFor(() => got(sub, 'key.expiring', key.id).length === 2);
    const notices = got(sub, 'key.expiring', key.id).map((p) => p.data.details.notice);
    expect(notices).toEqual(['7d', '1d']);
    // A new expiry is a new series.
    await app.client.patch(`/api/orgs/${o.orgId}/api-keys/${key.id}`, {
      key: o.adminKey,
      body: { expires_at: new Date(Date.now() + 5 * 86_400_000).toISOString() },
    });
    await watch();
    await waitFor(() => got(sub, 'key.expiring', key.id).length === 3);
    await observeFor(1_000);
    expect(got(sub, 'key.expiring', key.id)).toHaveLength(3);
  });

  it('sends key.spike when the flag turns on, once per spell', async () => {
    const sub = await org('Spike', ['key.spike']);
    const o = sub.org;
    const writer = await createKey(app.client, o, { scopes: ['events:write'] });
    const hot = await createKey(app.client, o, { name: 'hot' });
    const now = Date.now();
    const events = Array.from({ length: 150 }, (_, i) => ({
      key_id: hot.id,
      occurred_at: new Date(now - 60_000 - i * 1000).toISOString(),
    }));
    await reportEvents(app.client, o, writer.key, events);
    await waitFor(async () => {
      const { rows } = await sql<{ n: number }>`select request_count::int as n
        from api_key_usage_totals where key_id = ${hot.id}`.execute(app.kt.database.db);
      return rows[0]?.n === 150;
    });
    await watch();
    await watch();
    await waitFor(() => got(sub, 'key.spike', hot.id).length === 1);
    await observeFor(1_000);
    expect(got(sub, 'key.spike', hot.id)).toHaveLength(1);
    const [spike] = got(sub, 'key.spike', hot.id);
    expect(spike?.data.details).toMatchObject({ last_24h_requests: 150, prior_daily_mean: 0 });
    // The spell ends when the flag is off (here: its requests age out of the window).
    clock.advance(2 * 86_400_000);
    try {
      await watch();
      const { rows } = await sql<{ spike_since: Date | null }>`select spike_since from api_keys
        where id = ${hot.id}`.execute(app.kt.database.db);
      expect(rows[0]?.spike_since).toBeNull();
    } finally {
      clock.advance(-2 * 86_400_000);
    }
  });

  it('sends key.revoked_key_used for a revoked key still tried, at most once an hour', async () => {
    const sub = await org('Leaked', ['key.revoked_key_used']);
    const o = sub.org;
    const leaked = await createKey(app.client, o, { name: 'leaked' });
    await app.client.delete(`/api/orgs/${o.orgId}/api-keys/${leaked.id}`, { key: o.adminKey });
    const denied = async (n: number) => {
      for (let i = 0; i < n; i++) {
        expect((await app.client.get('/api/keys/self', { key: leaked.key })).status).toBe(401);
      }
    };
    const deniedCount = async () =>
      (
        await sql<{ n: number }>`select coalesce(denied_count, 0)::int as n
          from api_key_usage_totals where key_id = ${leaked.id}`.execute(app.kt.database.db)
      ).rows[0]?.n ?? 0;
    await denied(3);
    await waitFor(() => got(sub, 'key.revoked_key_used', leaked.id).length === 1, {
      timeoutMs: 15_000,
    });
    const [notice] = got(sub, 'key.revoked_key_used', leaked.id);
    expect(notice?.data).toMatchObject({
      key: { id: leaked.id, status: 'revoked' },
      actor: { type: 'system' },
      details: { outcome: 'revoked', ip: '127.0.0.1' },
    });
    // More attempts within the hour: ingested, but no second notice.
    const before = await deniedCount();
    await denied(2);
    await waitFor(async () => (await deniedCount()) >= before + 2);
    await observeFor(1_000);
    expect(got(sub, 'key.revoked_key_used', leaked.id)).toHaveLength(1);
    // An hour later, another attempt is news again.
    await sql`update api_keys set revoked_use_notified_at = now() - interval '61 minutes'
      where id = ${leaked.id}`.execute(app.kt.database.db);
    await denied(1);
    await waitFor(() => got(sub, 'key.revoked_key_used', leaked.id).length === 2, {
      timeoutMs: 15_000,
    });
  });

  it('sends key.quota_low under 10 % left and key.quota_exhausted on a refusal, once each', async () => {
    const sub = await org('Metered', ['key.quota_low', 'key.quota_exhausted']);
    const o = sub.org;
    const created = await app.client.post(`/api/orgs/${o.orgId}/api-keys`, {
      key: o.adminKey,
      body: { name: 'metered', quota: { limit: 20 } },
    });
    const k = { id: created.body.api_key.id as string, key: created.body.key as string };
    const self = () => app.client.get('/api/keys/self', { key: k.key });
    for (let i = 0; i < 17; i++) expect((await self()).status).toBe(200);
    await observeFor(1_000);
    expect(got(sub, 'key.quota_low', k.id)).toHaveLength(0);
    // The instance reports what it holds every sync; a use after that sees under 10 % left.
    for (let i = 0; i < 2; i++) expect((await self()).status).toBe(200);
    await waitFor(() => got(sub, 'key.quota_low', k.id).length === 1, { timeoutMs: 15_000 });
    expect(got(sub, 'key.quota_low', k.id)[0]?.data.details).toMatchObject({ limit: 20 });
    expect((await self()).status).toBe(200);
    expect((await self()).status).toBe(429);
    expect((await self()).status).toBe(429);
    await waitFor(() => got(sub, 'key.quota_exhausted', k.id).length === 1, {
      timeoutMs: 15_000,
    });
    await observeFor(1_000);
    expect(got(sub, 'key.quota_low', k.id)).toHaveLength(1);
    expect(got(sub, 'key.quota_exhausted', k.id)).toHaveLength(1);
  });

  it("sends key.quota_low from an instance's report too, once, naming the quota's key", async () => {
    const sub = await org('Reported low', ['key.quota_low']);
    const o = sub.org;
    const created = await app.client.post(`/api/orgs/${o.orgId}/api-keys`, {
      key: o.adminKey,
      body: { name: 'reported', quota: { limit: 10 } },
    });
    const id = created.body.api_key.id as string;
    // What instances report: 9 of 10 taken and spent, no use left to ingest.
    await sql`update key_quotas set pool = 1 where subject = ${id}`.execute(app.kt.database.db);
    const db = app.kt.limitsDatabase.db;
    expect(await noticeLowQuotas(db, [id])).toBe(0);
    await sql`update key_quotas set pool = 0 where subject = ${id}`.execute(app.kt.database.db);
    expect(await noticeLowQuotas(db, [id])).toBe(1);
    expect(await noticeLowQuotas(db, [id])).toBe(0);
    await waitFor(() => got(sub, 'key.quota_low', id).length === 1, { timeoutMs: 15_000 });
    expect(got(sub, 'key.quota_low', id)[0]?.data.details).toMatchObject({
      limit: 10,
      remaining: 0,
    });
  });

  it('sends key.rate_limited for a key refused by its rate limits, at most once an hour', async () => {
    const sub = await org('Throttled', ['key.rate_limited']);
    const o = sub.org;
    const k = await createKey(app.client, o, {
      rate_limits: [{ name: 'tight', limit: 1, window_seconds: 2_678_400 }],
    });
    const self = () => app.client.get('/api/keys/self', { key: k.key });
    expect((await self()).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await self()).status).toBe(429);
    await waitFor(() => got(sub, 'key.rate_limited', k.id).length === 1, { timeoutMs: 15_000 });
    expect(got(sub, 'key.rate_limited', k.id)[0]?.data).toMatchObject({
      key: { id: k.id, status: 'active' },
      actor: { type: 'system' },
      details: { ip: '127.0.0.1' },
    });
    const limited = async () =>
      (
        await sql<{ n: number }>`select coalesce(limited_count, 0)::int as n
          from api_key_usage_totals where key_id = ${k.id}`.execute(app.kt.database.db)
      ).rows[0]?.n ?? 0;
    const before = await limited();
    for (let i = 0; i < 2; i++) expect((await self()).status).toBe(429);
    await waitFor(async () => (await limited()) >= before + 2);
    await observeFor(1_000);
    expect(got(sub, 'key.rate_limited', k.id)).toHaveLength(1);
    await sql`update api_keys set rate_limited_notified_at = now() - interval '61 minutes'
      where id = ${k.id}`.execute(app.kt.database.db);
    expect((await self()).status).toBe(429);
    await waitFor(() => got(sub, 'key.rate_limited', k.id).length === 2, { timeoutMs: 15_000 });
  });
});
