import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let worker: Worker;
let org: TestOrg;

beforeAll(async () => {
  app = await startTestApp(dbUrl(), {
    config: {
      trustProxy: true,
      usage: { tracking: true, flushIntervalMs: 50, batchSize: 1000, bufferMax: 100_000 },
    },
  });
  worker = await startWorker(app.kt);
  org = await createOrg(app.client, 'Pipeline');
});
afterAll(async () => {
  await worker.stop();
  await app.close();
});

const totals = async (keyId: string) =>
  app.kt.database.db
    .selectFrom('api_key_usage_totals')
    .selectAll()
    .where('key_id', '=', keyId)
    .executeTakeFirst();

const eventCount = async (keyId: string) => {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from api_key_usage_events where key_id = ${keyId}`.execute(
    app.kt.database.db,
  );
  return rows[0]?.n ?? 0;
};

describe('usage tracking end to end', { timeout: 90_000 }, () => {
  it('records one event per request with route template, status, IP, agent and outcome', async () => {
    const k = await createKey(app.client, org);
    const res = await app.client.get('/v1/demo/orders/42?x=1', {
      key: k.key,
      headers: { 'x-forwarded-for': '203.0.113.7', 'user-agent': `agent/${'x'.repeat(400)}` },
    });
    expect(res.status).toBe(200);
    await app.client.get('/v1/demo/status/503', {
      key: k.key,
      headers: { 'x-forwarded-for': '203.0.113.8' },
    });
    await waitFor(async () => (await eventCount(k.id)) === 2);
    const rows = await app.kt.database.db
      .selectFrom('api_key_usage_events')
      .selectAll()
      .where('key_id', '=', k.id)
      .orderBy('occurred_at')
      .execute();
    expect(rows[0]).toMatchObject({
      org_id: org.orgId,
      method: 'GET',
      route: '/v1/demo/orders/:id',
      status: 200,
      ip: '203.0.113.7',
      outcome: 'success',
    });
    expect(rows[0]?.user_agent).toHaveLength(256);
    expect(rows[0]?.latency_ms).toBeGreaterThan(0);
    expect(rows[0]?.event_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(rows[1]).toMatchObject({ route: '/v1/demo/status/:code', status: 503 });
    const t = await waitFor(async () => {
      const row = await totals(k.id);
      return row?.request_count === 2 ? row : undefined;
    });
    expect(t).toMatchObject({ errors_5xx: 1, errors_4xx: 0, last_used_ip: '203.0.113.8' });
    const api = await app.client.get(`/api/orgs/${org.orgId}/api-keys/${k.id}`, {
      key: org.adminKey,
    });
    expect(api.body).toMatchObject({ request_count: 2, last_used_ip: '203.0.113.8' });
    expect(Date.parse(api.body.last_used_at)).toBe(rows[1]?.occurred_at.getTime());
  });

  it('counts exactly 10,000 from 100 concurrent clients × 100 requests on one key', async () => {
    const k = await createKey(app.client, org);
    await Promise.all(
      Array.from({ length: 100 }, async (_, client) => {
        for (let i = 0; i < 100; i++) {
          const res = await fetch(`${app.baseUrl}/v1/demo/orders/${i}`, {
            headers: { authorization: `Bearer ${k.key}`, 'x-forwarded-for': `10.1.0.${client}` },
          });
          expect(res.status).toBe(200);
          await res.arrayBuffer();
        }
      }),
    );
    // The latest event: sent once the others are ingested, so strictly after all of them.
    await waitFor(async () => (await totals(k.id))?.request_count === 10_000, {
      timeoutMs: 20_000,
    });
    const last = await app.client.get('/v1/demo/orders/last', {
      key: k.key,
      headers: { 'x-forwarded-for': '198.51.100.99' },
    });
    expect(last.status).toBe(200);
    const t = await waitFor(
      async () => {
        const row = await totals(k.id);
        return row && row.request_count >= 10_001 ? row : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(t.request_count).toBe(10_001);
    expect(await eventCount(k.id)).toBe(10_001);
    const { rows } = await sql<{ ip: string; at: Date }>`
      select host(ip) as ip, occurred_at as at from api_key_usage_events
      where key_id = ${k.id} order by occurred_at desc limit 1`.execute(app.kt.database.db);
    expect(t.last_used_at?.getTime()).toBe(rows[0]?.at.getTime());
    expect(t.last_used_ip).toBe('198.51.100.99');
  });

  it('counts denied attempts of known keys without moving last_used_at', async () => {
    const k = await createKey(app.client, org, { scopes: [] });
    await app.client.get('/v1/demo/orders/1', { key: k.key });
    const used = await waitFor(async () => (await totals(k.id))?.last_used_at);
    // insufficient scope, then revoked
    expect((await app.client.get(`/api/orgs/${org.orgId}/api-keys`, { key: k.key })).status).toBe(
      403,
    );
    await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${k.id}`, { key: org.adminKey });
    expect((await app.client.get('/v1/demo/orders/1', { key: k.key })).status).toBe(401);
    const t = await waitFor(async () => {
      const row = await totals(k.id);
      return row?.denied_count === 2 ? row : undefined;
    });
    expect(t.request_count).toBe(1);
    expect(t.last_used_at?.getTime()).toBe(used.getTime());
    expect(t.last_denied_at?.getTime()).toBeGreaterThan(used.getTime());
    const outcomes = await app.kt.database.db
      .selectFrom('api_key_usage_events')
      .select(['outcome', 'status'])
      .where('key_id', '=', k.id)
      .orderBy('occurred_at')
      .execute();
    expect(outcomes).toEqual([
      { outcome: 'success', status: 200 },
      { outcome: 'insufficient_scope', status: 403 },
      { outcome: 'revoked', status: 401 },
    ]);
  });

  it('records a verification as usage of the verified key', async () => {
    const verifier = await createKey(app.client, org, { scopes: ['keys:verify'] });
    const target = await createKey(app.client, org);
    const res = await app.client.post('/api/keys/verify', {
      key: verifier.key,
      body: { key: target.key },
    });
    expect(res.body.code).toBe('VALID');
    const t = await waitFor(async () => totals(target.id));
    expect(t.request_count).toBe(1);
    expect(await waitFor(async () => (await totals(verifier.id))?.request_count)).toBe(1);
  });

  it('exposes buffer, queue, ingest and cache figures on /metrics', async () => {
    const res = await app.client.get('/metrics');
    expect(res.status).toBe(200);
    for (const name of [
      'keytrail_usage_buffer_events',
      'keytrail_usage_events_enqueued_total',
      'keytrail_usage_events_dropped_total 0',
      'keytrail_usage_events_ingested_total',
      'keytrail_usage_ingest_lag_seconds',
      'keytrail_auth_cache_hits_total',
      'keytrail_auth_cache_misses_total',
      'keytrail_http_request_duration_seconds_bucket',
    ]) {
      expect(res.text).toContain(name);
    }
  });
});
