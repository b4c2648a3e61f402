import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker } from '../../workers/main.ts';
import { sql } from 'kysely';
import pg from 'pg';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import type { TestClient } from '../testing/client.ts';
import { createKey, type TestOrg } from '../testing/factories.ts';
import { startTwoInstances, type Instances } from '../testing/instances.ts';

// SPEC §11 quotas through requireKey and verify; `a` and `b` are two instances on one database.
const dbUrl = useTestDatabase();
let instances: Instances;
let a: TestApp;
let b: TestApp;
let org: TestOrg;

beforeAll(async () => {
  instances = await startTwoInstances(dbUrl(), 'Quotas', startWorker);
  ({ a, b, org } = instances);
});
afterAll(() => instances.close());

const keysPath = () => `/api/orgs/${org.orgId}/api-keys`;
const demo = (key: string, client: TestClient = a.client) =>
  client.get('/v1/demo/orders/1', { key });
const withQuota = (quota: unknown, extra: Record<string, unknown> = {}) =>
  a.client.post(keysPath(), { key: org.adminKey, body: { name: 'metered', quota, ...extra } });
const pool = async (subject: string) =>
  Number(
    (
      await sql<{
        pool: string;
      }>`select pool::text from key_quotas where subject = ${subject}`.execute(a.kt.database.db)
    ).rows[0]?.pool,
  );

describe('quotas in requireKey', () => {
  it('admits exactly the quota, then 429 quota_exceeded, and shows what remains', async () => {
    const created = await withQuota({ limit: 5 });
    expect(created.status).toBe(201);
    expect(created.body.api_key.quota).toEqual({ limit: 5, remaining: 5, refill: null });
    const key = created.body.key as string;
    const statuses = [];
    for (let i = 0; i < 7; i += 1) statuses.push((await demo(key)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
    const refused = await demo(key);
    expect(refused.body).toMatchObject({ code: 'quota_exceeded', violated_policies: ['quota'] });
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    // No refill: no time after which a retry would work.
    expect(refused.headers.get('retry-after')).toBeNull();
    const got = await a.client.get(`${keysPath()}/${created.body.api_key.id}`, {
      key: org.adminKey,
    });
    expect(got.body.quota).toEqual({ limit: 5, remaining: 0, refill: null });
  });

  it('admits exactly the quota with concurrent requests through two instances', async () => {
    const created = await withQuota({ limit: 40 });
    const key = created.body.key as string;
    const results = await Promise.all(
      Array.from({ length: 120 }, (_, i) => demo(key, i % 2 === 0 ? a.client : b.client)),
    );
    const admitted = results.filter((r) => r.status === 200).length;
    expect(admitted).toBeLessThanOrEqual(40);
    // Credit one instance took and had no request left for is spent by its next requests.
    let total = admitted;
    for (let i = 0; i < 60; i += 1) {
      if ((await demo(key, i % 2 === 0 ? a.client : b.client)).status === 200) total += 1;
    }
    expect(total).toBe(40);
  });

  it('charges nothing for a request a rate limit refuses', async () => {
    const created = await withQuota(
      { limit: 100 },
      { rate_limits: [{ name: 'tight', limit: 2, window_seconds: 2_678_400 }] },
    );
    const key = created.body.key as string;
    const statuses = [];
    for (let i = 0; i < 6; i += 1) statuses.push((await demo(key)).status);
    expect(statuses).toEqual([200, 200, 429, 429, 429, 429]);
    await a.kt.limits.quota.releaseAll();
    expect(await pool(created.body.api_key.id)).toBe(98);
  });

  it('sets remaining by PATCH, removes the quota with null, and refills on a new period', async () => {
    const created = await withQuota({ limit: 3, refill: { interval: 'day', amount: 3 } });
    const id = created.body.api_key.id as string;
    const key = created.body.key as string;
    expect(created.body.api_key.quota).toEqual({
      limit: 3,
      remaining: 3,
      refill: { interval: 'day', amount: 3 },
    });
    for (let i = 0; i < 3; i += 1) expect((await demo(key)).status).toBe(200);
    expect((await demo(key)).status).toBe(429);
    // The instance's credit given back and its state dropped first: otherwise a lease whose last
    // uses are not reported yet counts spent credit as held (PATCH remaining leaves that much
    // less in the pool), and a background sync may take ahead meanwhile (two CI failures under
    // load). The quota is then read as no instance holds any of it.
    await a.kt.limits.quota.releaseAll();
    const patch = (quota: unknown) =>
      a.client.patch(`${keysPath()}/${id}`, { key: org.adminKey, body: { quota } });
    expect((await patch({ remaining: 2 })).body.quota).toMatchObject({ remaining: 2 });
    expect((await demo(key)).status).toBe(200);
    expect((await demo(key)).status).toBe(200);
    expect((await demo(key)).status).toBe(429);
    // A new UTC day: the pool refills to the amount at the first take of the period. (Nothing
    // held again, and no take ahead between the update and the read: see above.)
    await a.kt.limits.quota.releaseAll();
    await sql`update key_quotas set period_start = period_start - interval '1 day'
      where subject = ${id}`.execute(a.kt.database.db);
    const refilled = await a.client.get(`${keysPath()}/${id}`, { key: org.adminKey });
    expect(refilled.body.quota.remaining).toBe(3);
    await waitFor(async () => (await demo(key)).status === 200, { timeoutMs: 3_000 });
    expect((await patch(null)).body.quota).toBeNull();
    for (let i = 0; i < 6; i += 1) expect((await demo(key)).status).toBe(200);
  });

  it('refuses bad quotas with a 400 naming the field', async () => {
    for (const [quota, field] of [
      [{ limit: 0 }, 'body.quota.limit'],
      [{ limit: 1.5 }, 'body.quota.limit'],
      [{ limit: 10, refill: { interval: 'week', amount: 1 } }, 'body.quota.refill.interval'],
      [{ limit: 10, refill: { interval: 'day', amount: 0 } }, 'body.quota.refill.amount'],
      [{ limit: 10, remaining: 5 }, 'body.quota'],
      [{}, 'body.quota.limit'],
      [{ limit: 10, refill: { interval: 'day', amount: 11 } }, 'body.quota.refill.amount'],
    ] as const) {
      const res = await withQuota(quota);
      expect(res.status, JSON.stringify(quota)).toBe(400);
      expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(field);
    }
    const plain = await createKey(a.client, org);
    const noQuota = await a.client.patch(`${keysPath()}/${plain.id}`, {
      key: org.adminKey,
      body: { quota: { remaining: 5 } },
    });
    expect(noQuota.status).toBe(400);
  });

  it('is shared by a key and its rotation, and records refusals as limited', async () => {
    const created = await withQuota({ limit: 2 });
    const rotated = await a.client.post(`${keysPath()}/${created.body.api_key.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 600 },
    });
    expect(rotated.body.api_key.quota).toMatchObject({ limit: 2 });
    expect((await demo(created.body.key)).status).toBe(200);
    expect((await demo(rotated.body.key)).status).toBe(200);
    expect((await demo(created.body.key)).status).toBe(429);
    expect((await demo(rotated.body.key)).status).toBe(429);
    const id = created.body.api_key.id as string;
    await waitFor(async () => {
      const row = await a.kt.database.db
        .selectFrom('api_key_usage_totals')
        .select(['limited_count'])
        .where('key_id', '=', id)
        .executeTakeFirst();
      return row?.limited_count === 1;
    });
  });

  it('gives back what an idle instance holds, to the quota', async () => {
    const created = await withQuota({ limit: 500 });
    const id = created.body.api_key.id as string;
    const burst = await Promise.all(Array.from({ length: 60 }, () => demo(created.body.key)));
    const admitted = burst.filter((r) => r.status === 200).length;
    expect(admitted).toBe(60);
    // The chunks taken for that burst come back once the instance is idle (4 syncs).
    await waitFor(async () => (await pool(id)) === 440, { timeoutMs: 5_000 });
  });

  it('voids credit held under an old refill interval, and after a quota is removed and set again', async () => {
    const busy = async (key: string, n: number) =>
      (await Promise.all(Array.from({ length: n }, () => demo(key)))).filter(
        (r) => r.status === 200,
      ).length;
    const created = await withQuota({ limit: 10_000 });
    const id = created.body.api_key.id as string;
    const key = created.body.key as string;
    const patch = (quota: unknown) =>
      a.client.patch(`${keysPath()}/${id}`, { key: org.adminKey, body: { quota } });
    expect(await busy(key, 150)).toBe(150);
    expect((await patch({ refill: { interval: 'day', amount: 10_000 } })).status).toBe(200);
    expect((await patch({ remaining: 10 })).status).toBe(200);
    expect(await busy(key, 60)).toBe(10);
    expect((await patch(null)).status).toBe(200);
    expect((await patch({ limit: 10_000 })).status).toBe(200);
    expect(await busy(key, 150)).toBe(150);
    expect((await patch(null)).status).toBe(200);
    expect((await patch({ limit: 5 })).status).toBe(200);
    expect(await busy(key, 40)).toBe(5);
  });

  it('gives back held credit on a graceful stop', async () => {
    const extra = await startTestApp(dbUrl());
    const created = await withQuota({ limit: 1000 });
    const id = created.body.api_key.id as string;
    for (let i = 0; i < 20; i += 1)
      expect((await demo(created.body.key, extra.client)).status).toBe(200);
    await extra.close();
    expect(await pool(id)).toBe(980);
  });
});

/** Takes fail (their statement waits past its deadline) until the function returned runs. */
async function lockQuotas(): Promise<() => Promise<void>> {
  const blocker = new pg.Client({ connectionString: dbUrl() });
  await blocker.connect();
  await blocker.query('begin');
  await blocker.query('lock table key_quotas in access exclusive mode');
  return async () => {
    await blocker.query('rollback');
    await blocker.end();
  };
}

describe('quotas while takes fail', () => {
  it('spends what the instance holds, then answers 503 (not quota_exceeded), and recovers', async () => {
    const created = await withQuota({ limit: 1000 });
    const key = created.body.key as string;
    expect((await demo(key)).status).toBe(200);
    const release = await lockQuotas();
    const statuses: number[] = [];
    try {
      await waitFor(
        async () => {
          const res = await demo(key);
          statuses.push(res.status);
          if (res.status === 503) expect(res.headers.get('retry-after')).toBe('1');
          return res.status === 503;
        },
        { timeoutMs: 15_000 },
      );
    } finally {
      await release();
    }
    expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
    await waitFor(async () => (await demo(key)).status === 200, { timeoutMs: 5_000 });
    // Once takes work again, another key's first request takes credit: not a 503 left over.
    const fresh = await withQuota({ limit: 10 });
    expect((await demo(fresh.body.key as string)).status).toBe(200);
  });
});

describe('idle credit whose return fails', () => {
  // An instance syncing once a second: its idle return comes 4 s after its last take, time
  // enough to lock the quota row first however slow this machine is.
  let slow: TestApp;
  beforeAll(async () => {
    slow = await startTestApp(dbUrl(), {
      config: { limits: { syncMs: 1000, quotaFailOpen: false } },
    });
  });
  afterAll(() => slow.close());

  it('is kept when the return surely changed nothing (its deadline passed), and given back later', async () => {
    const created = await withQuota({ limit: 500 });
    const id = created.body.api_key.id as string;
    expect((await demo(created.body.key as string, slow.client)).status).toBe(200);
    // The next sync takes ahead for the key (a take after use); then it is idle.
    await waitFor(async () => (await pool(id)) < 499, { timeoutMs: 10_000 });
    const taken = await pool(id);
    // The quota row locked: the idle return waits past its 1 s deadline.
    const blocker = new pg.Client({ connectionString: dbUrl() });
    await blocker.connect();
    try {
      await blocker.query('begin');
      await blocker.query('select 1 from key_quotas where subject = $1 for update', [id]);
      // Seen from outside the blocker's transaction (whose view of pg_stat_activity is frozen).
      const returning = async () =>
        (
          await a.kt.database.pool.query<{ n: number }>(
            `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock'
               and application_name = 'keytrail-limits' and query like '%as v(subject, back%'`,
          )
        ).rows[0]?.n === 1;
      await waitFor(returning, { timeoutMs: 10_000 });
      await waitFor(async () => !(await returning()), { timeoutMs: 10_000 });
      await blocker.query('rollback');
    } finally {
      await blocker.end();
    }
    // The return timed out (it cannot pass the lock). The credit is still this instance's: a
    // later sync gives it back (dropped, the pool would stay at what it was before the return).
    expect(taken).toBeLessThan(499);
    await waitFor(async () => (await pool(id)) === 499, { timeoutMs: 10_000 });
  });
});

describe('quotas failing open', () => {
  it('admits while takes fail with KEYTRAIL_QUOTA_FAIL_OPEN, then takes it off the quota', async () => {
    const open = await startTestApp(dbUrl(), {
      config: { limits: { syncMs: 250, quotaFailOpen: true } },
    });
    try {
      const created = await withQuota({ limit: 1000 });
      const id = created.body.api_key.id as string;
      const key = created.body.key as string;
      expect((await demo(key, open.client)).status).toBe(200);
      const release = await lockQuotas();
      const statuses: number[] = [];
      try {
        // Until a take has failed and the instance admitted on credit it does not hold.
        await waitFor(
          async () => {
            statuses.push((await demo(key, open.client)).status);
            return open.kt.limits.quota.stats.failOpen > 0;
          },
          { timeoutMs: 15_000 },
        );
      } finally {
        await release();
      }
      expect(statuses.every((s) => s === 200)).toBe(true);
      const metrics = (await open.client.get('/metrics')).text;
      expect(metrics).toMatch(/^keytrail_quota_fail_open_total [1-9]/m);
      // Debited once takes work; what the instance held comes back when it idles.
      const admitted = 1 + statuses.length;
      await waitFor(async () => (await pool(id)) === 1000 - admitted, { timeoutMs: 10_000 });
    } finally {
      await open.close();
    }
  });
});

describe('verify with a quota', () => {
  it('charges cost (0 checks without spending) and answers QUOTA_EXCEEDED past it', async () => {
    const gateway = await createKey(a.client, org, { scopes: ['keys:verify'] });
    const created = await withQuota({ limit: 10 });
    const verify = (cost?: number) =>
      a.client.post('/api/keys/verify', {
        key: gateway.key,
        body: { key: created.body.key, ...(cost !== undefined && { cost }) },
      });
    expect((await verify(3)).body).toMatchObject({ valid: true, quota: { remaining: 7 } });
    expect((await verify(0)).body).toMatchObject({ valid: true, quota: { remaining: 7 } });
    expect((await verify(8)).body).toMatchObject({
      valid: false,
      code: 'QUOTA_EXCEEDED',
      quota: { remaining: 7 },
    });
    expect((await verify()).body).toMatchObject({ valid: true, quota: { remaining: 6 } });
    expect((await verify(6)).body).toMatchObject({ valid: true, quota: { remaining: 0 } });
    expect((await verify(1001)).status).toBe(400);
    expect((await verify(-1)).status).toBe(400);
  });
});
