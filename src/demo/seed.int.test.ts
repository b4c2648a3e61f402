/**
 * The Demo org's sample data against real Postgres: keys created, rotated and revoked at their
 * moments, the events sent through the report path and ingested by the worker, and the story
 * the first look tells (a trend, a dormant key, a spike, an old key still in use, a revoked key
 * still being tried) read back through the API.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { seedDemoOrg, type DemoOrg } from './seed.ts';

const DAY = 86_400_000;
const dbUrl = useTestDatabase();
let app: TestApp;
let worker: Worker;
let demo: DemoOrg;
let started: number;

type Row = {
  key_id: string;
  name: string;
  status: string;
  dormant: boolean;
  spike: boolean;
  request_count: number;
  denied_count: number;
  last_used_at: string | null;
};

const get = async (path: string) =>
  (await app.client.get(`/api/orgs/${demo.org.id}${path}`, { key: demo.adminKey.plaintext })).body;

beforeAll(async () => {
  app = await startTestApp(dbUrl());
  worker = await startWorker(app.kt);
  started = Date.now();
  demo = await seedDemoOrg(app.kt.config, app.kt.logger, 'Demo');
  // Every sample event ingested: raw rows equal the events sent (nothing written beside the queue).
  await waitFor(
    async () => {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from api_key_usage_events
        where org_id = ${demo.org.id}`.execute(app.kt.database.db);
      return rows[0]?.n === demo.events;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}, 90_000);
afterAll(async () => {
  await worker?.stop();
  await app?.close();
});

describe('Demo org sample data', () => {
  it('tells the story on the org usage page', async () => {
    expect(demo.events).toBeGreaterThan(10_000);
    const usage = await get('/api-keys/usage?limit=50');
    const rows: Row[] = usage.data;
    const names = (pick: (r: Row) => boolean) =>
      rows
        .filter(pick)
        .map((r) => r.name)
        .sort();
    expect(rows).toHaveLength(demo.keys + 1);
    expect(names((r) => r.dormant)).toEqual(['ci-smoke-tests', 'legacy-reporting']);
    expect(names((r) => r.spike)).toEqual(['mobile-app']);
    expect(names((r) => r.status === 'revoked')).toEqual(['partner-acme']);
    expect(names((r) => r.last_used_at === null)).toEqual(['ci-smoke-tests']);
    expect(usage.summary.total_requests).toBe(rows.reduce((a, r) => a + r.request_count, 0));
    // The latest sample use is minutes old, never in the future.
    const latest = Math.max(...rows.map((r) => Date.parse(r.last_used_at ?? '0')));
    expect(latest).toBeLessThanOrEqual(Date.now());
    expect(started - latest).toBeLessThan(15 * 60_000);
    expect(rows.find((r) => r.name === 'partner-acme')?.denied_count).toBeGreaterThan(0);
  });

  it('shows two weeks of trend, an incident, and the rotated key with its old key in use', async () => {
    const rows: Row[] = (await get('/api-keys/usage?limit=50')).data;
    const checkout = rows.find((r) => r.name === 'checkout-service')!;
    const trend = await get(`/api-keys/${checkout.key_id}/usage`);
    const busyDays = trend.series.filter((s: { requests: number }) => s.requests > 100);
    expect(busyDays.length).toBeGreaterThanOrEqual(13);
    // The incident's day stands out whatever the time of day it falls in (night traffic is low).
    const fives = trend.series
      .map((s: { errors_5xx: number }) => s.errors_5xx)
      .filter((_: number, i: number, all: number[]) => i >= all.length - 14)
      .sort((a: number, b: number) => a - b);
    const median = fives[Math.floor(fives.length / 2)] ?? 0;
    expect(fives.at(-1)).toBeGreaterThanOrEqual(Math.max(3 * median, median + 15));

    const keys = (await get('/api-keys?limit=100')).data as {
      id: string;
      name: string;
      rotated_from_id: string | null;
      created_at: string;
    }[];
    const successor = keys.find((k) => k.rotated_from_id)!;
    expect(successor.name).toBe('billing-sync');
    const page = await get(`/api-keys/${successor.id}/usage`);
    expect(page.rotation.previous.requests_since_rotation).toBeGreaterThan(500);
    expect(page.rotation.previous.status).toBe('active');
    expect(started - Date.parse(page.rotation.previous.last_used_at)).toBeLessThan(60 * 60_000);
    // Keys were created at their moments in the story, weeks ago.
    const legacy = keys.find((k) => k.name === 'legacy-reporting')!;
    expect(started - Date.parse(legacy.created_at)).toBeGreaterThan(60 * DAY);
  });

  it('records the revoked partner key still being tried after its revocation', async () => {
    const rows: Row[] = (await get('/api-keys/usage?limit=50')).data;
    const partner = rows.find((r) => r.name === 'partner-acme')!;
    const page = await get(`/api-keys/${partner.key_id}/usage`);
    expect(Date.parse(page.totals.last_denied_at)).toBeGreaterThan(Date.parse(page.key.revoked_at));
    const audit = (await get('/audit-events?limit=100')).data as { action: string }[];
    const actions = audit.map((a) => a.action);
    // Every key of the org, the rotation's successor included, has its creation audited.
    expect(actions.filter((a) => a === 'key.created')).toHaveLength(rows.length);
    expect(actions).toContain('key.rotated');
    expect(actions).toContain('key.revoked');
  });
});

describe('Demo org sample data that fails half-way', () => {
  it('still leaves the org and a working admin key, and says why', async () => {
    // Three keys at most: the fourth sample key is refused (key_limit_reached).
    const small = await seedDemoOrg({ ...app.kt.config, maxKeysPerOrg: 3 }, app.kt.logger, 'Small');
    expect(small.failure).toMatch(/limit/i);
    // It says what it did before the refusal: two sample keys beside the admin key, no events.
    expect(small.keys).toBe(2);
    expect(small.events).toBe(0);
    const res = await app.client.get(`/api/orgs/${small.org.id}`, {
      key: small.adminKey.plaintext,
    });
    expect(res.status).toBe(200);
    expect(res.body.name).toBe('Small');
  });
});
