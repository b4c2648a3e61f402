import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker } from '../../workers/main.ts';
import { sql } from 'kysely';
import pg from 'pg';
import { parseList } from 'structured-headers';
import { useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import type { TestClient, TestResponse } from '../testing/client.ts';
import { createKey, type TestOrg } from '../testing/factories.ts';
import { startTwoInstances, type Instances } from '../testing/instances.ts';

// SPEC §11 rate limits through requireKey and verify; `a` and `b` are two instances on one
// database (the multi-process proof is test/limits-cluster.int.test.ts).
const dbUrl = useTestDatabase();
let instances: Instances;
let a: TestApp;
let b: TestApp;
let org: TestOrg;

beforeAll(async () => {
  instances = await startTwoInstances(dbUrl(), 'Rate limits', startWorker);
  ({ a, b, org } = instances);
});
afterAll(() => instances.close());

const keysPath = () => `/api/orgs/${org.orgId}/api-keys`;
const demo = (key: string, client: TestClient = a.client) =>
  client.get('/v1/demo/orders/1', { key });
const policy = (name: string, limit: number, windowSeconds: number) => ({
  name,
  limit,
  window_seconds: windowSeconds,
});

/** Tests on 31-day windows need not wait: a boundary falls in a test's second once in 2.6 M. */
const MONTH = 2_678_400;

/** Waits until `Date.now()` is early in a window of `seconds`, so a burst stays in one window. */
async function earlyInWindow(seconds: number, within = 0.5): Promise<void> {
  const width = seconds * 1000;
  await waitFor(() => Date.now() % width > 20 && Date.now() % width < width * within, {
    timeoutMs: width + 1000,
  });
}

/** The RateLimit field's members as name → {r, t}. */
function rateLimit(res: TestResponse): Record<string, { r: number; t: number }> {
  const out: Record<string, { r: number; t: number }> = {};
  for (const [name, params] of parseList(res.headers.get('ratelimit') ?? '')) {
    out[String(name)] = { r: Number(params.get('r')), t: Number(params.get('t')) };
  }
  return out;
}

describe('rate limits in requireKey', () => {
  it('admits the limit, then 429 with Retry-After and the policy, and again once the window passed', async () => {
    const k = await createKey(a.client, org, { rate_limits: [policy('burst', 3, 2)] });
    expect(k.body.rate_limits).toEqual([policy('burst', 3, 2)]);
    await earlyInWindow(2);
    const seen: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const res = await demo(k.key);
      expect(res.status).toBe(200);
      expect(res.headers.get('ratelimit-policy')).toBe('"burst";q=3;w=2');
      seen.push(rateLimit(res).burst?.r ?? -1);
      expect(rateLimit(res).burst?.t).toBeGreaterThanOrEqual(1);
      expect(rateLimit(res).burst?.t).toBeLessThanOrEqual(2);
    }
    expect(seen).toEqual([2, 1, 0]);
    const refused = await demo(k.key);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    expect(refused.body).toMatchObject({ code: 'rate_limited', violated_policies: ['burst'] });
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(2);
    expect(rateLimit(refused).burst?.r).toBe(0);
    expect(refused.text).not.toContain(k.id);
    // Refused requests spend nothing, so asking until admitted changes nothing: it is admitted
    // once the window Retry-After named has passed, and not after much more.
    const refusedAt = Date.now();
    await waitFor(async () => (await demo(k.key)).status === 200, {
      timeoutMs: retryAfter * 1000 + 1000,
      intervalMs: 50,
    });
    expect(Date.now() - refusedAt).toBeLessThanOrEqual(retryAfter * 1000 + 1000);
    expect((await demo(k.key)).status).toBe(200);
  });

  it('charges nothing for a refused request: a refusal by one policy leaves the others', async () => {
    const k = await createKey(a.client, org, {
      rate_limits: [policy('wide', 5, MONTH), policy('narrow', 2, MONTH)],
    });
    const statuses = [];
    for (let i = 0; i < 5; i += 1) statuses.push((await demo(k.key)).status);
    expect(statuses).toEqual([200, 200, 429, 429, 429]);
    const refused = await demo(k.key);
    expect(refused.body.violated_policies).toEqual(['narrow']);
    expect(rateLimit(refused)).toMatchObject({ wide: { r: 3 }, narrow: { r: 0 } });
    await a.client.patch(`${keysPath()}/${k.id}`, {
      key: org.adminKey,
      body: { rate_limits: [policy('wide', 5, MONTH), policy('narrow', 10, MONTH)] },
    });
    const after = [];
    for (let i = 0; i < 4; i += 1) after.push((await demo(k.key)).status);
    expect(after).toEqual([200, 200, 200, 429]);
  });

  it('counts decisions, claims and the sync in /metrics, without key ids', async () => {
    const k = await createKey(a.client, org, { rate_limits: [policy('metered', 1, MONTH)] });
    expect((await demo(k.key)).status).toBe(200);
    expect((await demo(k.key)).status).toBe(429);
    const metrics = (await a.client.get('/metrics')).text;
    const value = (line: string) =>
      Number(
        metrics
          .split('\n')
          .find((l) => l.startsWith(line))
          ?.split(' ')[1],
      );
    expect(value('keytrail_limit_decisions_total{outcome="admitted"}')).toBeGreaterThanOrEqual(1);
    expect(value('keytrail_limit_decisions_total{outcome="rate_limited"}')).toBeGreaterThanOrEqual(
      1,
    );
    expect(value('keytrail_limits_claims_total{result="ok"}')).toBeGreaterThanOrEqual(1);
    expect(value('keytrail_limits_degraded')).toBe(0);
    expect(value('keytrail_limits_subjects')).toBeGreaterThanOrEqual(1);
    expect(metrics).not.toContain(k.id);
  });

  it('sends no rate-limit fields for a key without limits', async () => {
    const k = await createKey(a.client, org);
    const res = await demo(k.key);
    expect(res.headers.get('ratelimit')).toBeNull();
    expect(res.headers.get('ratelimit-policy')).toBeNull();
  });

  it('admits the limit exactly across two instances, and a rotated key shares its window', async () => {
    const k = await createKey(a.client, org, { rate_limits: [policy('shared', 10, MONTH)] });
    const rotated = await a.client.post(`${keysPath()}/${k.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 600 },
    });
    expect(rotated.body.api_key.rate_limits).toEqual([policy('shared', 10, MONTH)]);
    const keys = [k.key, rotated.body.key as string];
    const through = (i: number) => demo(keys[i % 2]!, i % 4 < 2 ? a.client : b.client);
    const burst = await Promise.all(Array.from({ length: 40 }, (_, i) => through(i)));
    const admitted = burst.filter((r) => r.status === 200).length;
    expect(admitted).toBeLessThanOrEqual(10);
    expect(burst.filter((r) => r.status !== 200).every((r) => r.status === 429)).toBe(true);
    // Credit one instance claimed and had no request left for is spent by its next requests:
    // the window's total comes to the limit exactly, never more.
    let total = admitted;
    for (let i = 0; i < 24; i += 1) if ((await through(i)).status === 200) total += 1;
    expect(total).toBe(10);
  });

  it('changes the policies of a key and of its rotation together; a key cannot change its own', async () => {
    const k = await createKey(a.client, org, {
      scopes: ['keys:write', 'keys:read'],
      rate_limits: [policy('own', 5, MONTH)],
    });
    const rotated = await a.client.post(`${keysPath()}/${k.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 600 },
    });
    const next = rotated.body.api_key.id as string;
    const patched = await a.client.patch(`${keysPath()}/${next}`, {
      key: org.adminKey,
      body: { rate_limits: [policy('own', 50, MONTH)] },
    });
    expect(patched.body.rate_limits).toEqual([policy('own', 50, MONTH)]);
    const old = await a.client.get(`${keysPath()}/${k.id}`, { key: org.adminKey });
    expect(old.body.rate_limits).toEqual([policy('own', 50, MONTH)]);
    for (const body of [{ rate_limits: [] }, { allowed_ips: ['0.0.0.0/0'] }]) {
      const self = await a.client.patch(`${keysPath()}/${k.id}`, { key: k.key, body });
      expect(self.status).toBe(403);
      expect(self.body.detail).toContain('cannot change its own limits');
      // Nor those of its successor, which it shares.
      const sibling = await a.client.patch(`${keysPath()}/${next}`, { key: k.key, body });
      expect(sibling.status).toBe(403);
    }
    const renamed = await a.client.patch(`${keysPath()}/${k.id}`, {
      key: k.key,
      body: { name: 'renamed by itself' },
    });
    expect(renamed.status).toBe(200);
  });

  it('records refusals as rate_limited events: limited, never use', async () => {
    const k = await createKey(a.client, org, { rate_limits: [policy('one', 1, MONTH)] });
    expect((await demo(k.key)).status).toBe(200);
    expect((await demo(k.key)).status).toBe(429);
    const totals = await waitFor(async () => {
      const row = await a.kt.database.db
        .selectFrom('api_key_usage_totals')
        .selectAll()
        .where('key_id', '=', k.id)
        .executeTakeFirst();
      return row?.limited_count === 1 && row.request_count === 1 ? row : undefined;
    });
    expect(totals.denied_count).toBe(0);
    const { rows } = await sql<{ status: number }>`select status from api_key_usage_events
      where key_id = ${k.id} and outcome = 'rate_limited'`.execute(a.kt.database.db);
    expect(rows).toEqual([{ status: 429 }]);
  });
});

describe('degraded: claims failing', () => {
  it('admits each instance its share of the window, then shares again once claims work', async () => {
    const k = await createKey(a.client, org, { rate_limits: [policy('cut', 8, MONTH)] });
    // Claims cannot take the table: each waits out the limits pool's 1 s deadline and fails.
    const blocker = new pg.Client({ connectionString: dbUrl() });
    await blocker.connect();
    const metric = async (name: string) =>
      Number(
        (await a.client.get('/metrics')).text
          .split('\n')
          .find((l) => l.startsWith(`${name} `))
          ?.split(' ')[1],
      );
    try {
      await blocker.query('begin');
      await blocker.query('lock table key_rate_claims in access exclusive mode');
      // First 503 (claims failing for a moment: no decision), then, degraded, the share.
      const statuses: number[] = [];
      await waitFor(
        async () => {
          statuses.push((await demo(k.key)).status);
          return statuses.includes(200);
        },
        { timeoutMs: 10_000 },
      );
      for (let i = 0; i < 10; i += 1) statuses.push((await demo(k.key)).status);
      const first = statuses.indexOf(200);
      expect(statuses.slice(0, first).every((s) => s === 503)).toBe(true);
      // The instance count as last seen (no claim answers while the table is locked).
      const share = Math.floor(8 / a.kt.limits.rate.instances);
      expect(share).toBeGreaterThanOrEqual(1);
      expect(statuses.slice(first)).toEqual([
        ...Array.from({ length: share }, () => 200),
        ...Array.from({ length: statuses.length - first - share }, () => 429),
      ]);
      expect(await metric('keytrail_limits_degraded')).toBe(1);
    } finally {
      await blocker.query('rollback');
      await blocker.end();
    }
    await waitFor(async () => (await metric('keytrail_limits_degraded')) === 0, {
      timeoutMs: 5_000,
    });
  });
});

describe('the org default', () => {
  it('applies to keys without rate limits of their own, on every instance within 1 s', async () => {
    const own = await createKey(a.client, org, { rate_limits: [policy('own', 100, 60)] });
    const follows = await createKey(a.client, org);
    expect(follows.body.rate_limits).toEqual([]);
    const path = `/api/orgs/${org.orgId}/policies/rate-limits`;
    expect((await a.client.get(path, { key: org.adminKey })).body).toEqual({ rate_limits: [] });
    expect((await demo(follows.key, b.client)).headers.get('ratelimit')).toBeNull();
    const put = await a.client.put(path, {
      key: org.adminKey,
      body: { rate_limits: [policy('org', 1000, 60)] },
    });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ rate_limits: [policy('org', 1000, 60)] });
    const changedAt = Date.now();
    await waitFor(
      async () =>
        (await demo(follows.key, b.client)).headers.get('ratelimit-policy') === '"org";q=1000;w=60',
      { timeoutMs: 1_000 },
    );
    expect(Date.now() - changedAt).toBeLessThan(1_000);
    expect((await demo(own.key, b.client)).headers.get('ratelimit-policy')).toBe(
      '"own";q=100;w=60',
    );
    const audit = await a.client.get(`/api/orgs/${org.orgId}/audit-events?action=policy.updated`, {
      key: org.adminKey,
    });
    expect(audit.body.data[0].details).toMatchObject({
      policy: 'rate-limits',
      from: [],
      to: [policy('org', 1000, 60)],
    });
    await a.client.put(path, { key: org.adminKey, body: { rate_limits: [] } });
  });

  it('refuses bad policies with a 400 naming the field', async () => {
    const path = `/api/orgs/${org.orgId}/policies/rate-limits`;
    const cases: [unknown, string][] = [
      [[policy('Burst', 1, 1)], 'body.rate_limits.0.name'],
      [[policy('a', 0, 1)], 'body.rate_limits.0.limit'],
      [[policy('a', 1_000_000_001, 1)], 'body.rate_limits.0.limit'],
      [[policy('a', 1, 2_678_401)], 'body.rate_limits.0.window_seconds'],
      [[policy('a', 1.5, 1)], 'body.rate_limits.0.limit'],
      [[policy('a', 1, 1), policy('a', 2, 60)], 'body.rate_limits.1.name'],
      [[1, 2, 3, 4].map((i) => policy(`p${i}`, 1, 1)), 'body.rate_limits'],
      [[{ ...policy('a', 1, 1), extra: 1 }], 'body.rate_limits.0'],
      [null, 'body.rate_limits'],
    ];
    for (const [rateLimits, field] of cases) {
      const res = await a.client.put(path, {
        key: org.adminKey,
        body: { rate_limits: rateLimits },
      });
      expect(res.status, JSON.stringify(rateLimits)).toBe(400);
      expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(field);
      const created = await a.client.post(keysPath(), {
        key: org.adminKey,
        body: { name: 'bad', rate_limits: rateLimits },
      });
      expect(created.status).toBe(400);
    }
    expect((await a.client.get(path, { key: org.adminKey })).body).toEqual({ rate_limits: [] });
  });
});

describe('verify with rate limits', () => {
  it('answers RATE_LIMITED past the limit, with what is left of each window', async () => {
    const gateway = await createKey(a.client, org, { scopes: ['keys:verify'] });
    const k = await createKey(a.client, org, { rate_limits: [policy('calls', 2, MONTH)] });
    const verify = () =>
      a.client.post('/api/keys/verify', { key: gateway.key, body: { key: k.key } });
    const first = await verify();
    expect(first.body).toMatchObject({ valid: true, code: 'VALID' });
    expect(first.body.ratelimits).toEqual([
      { name: 'calls', limit: 2, remaining: 1, reset_seconds: expect.any(Number) },
    ]);
    expect((await verify()).body.ratelimits[0].remaining).toBe(0);
    const refused = await verify();
    expect(refused.status).toBe(200);
    expect(refused.body).toMatchObject({
      valid: false,
      code: 'RATE_LIMITED',
      key_id: k.id,
      ratelimits: [{ name: 'calls', limit: 2, remaining: 0 }],
    });
    expect(refused.body.ratelimits[0].reset_seconds).toBeGreaterThanOrEqual(1);
    expect(refused.body.ratelimits[0].reset_seconds).toBeLessThanOrEqual(MONTH);
  });
});
