/** The org at a glance, GET /api/orgs/:orgId/usage/daily: daily totals and busiest keys. */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createKey, createOrg, type TestKey, type TestOrg } from '../testing/factories.ts';
import { useTestApp } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';

const app = useTestApp();
const DAY_MS = 86_400_000;
const dayAgo = (n: number) =>
  new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - n * DAY_MS).toISOString().slice(0, 10);

/** A key's daily rollup row, as the ingest writes it. */
async function rollup(org: TestOrg, key: TestKey, day: string, counts: Record<string, number>) {
  const c = { requests: 0, errors_4xx: 0, errors_5xx: 0, denied: 0, limited: 0, ...counts };
  await sql`insert into api_key_usage_daily (key_id, day, org_id, requests, errors_4xx,
      errors_5xx, denied, limited, latency_sum_ms, latency_hist)
    values (${key.id}, ${day}::date, ${org.orgId}, ${c.requests}, ${c.errors_4xx},
      ${c.errors_5xx}, ${c.denied}, ${c.limited}, 0, '{}')`.execute(app().kt.database.db);
}

const trend = (org: TestOrg, query = '', key = org.adminKey) =>
  app().client.get(`/api/orgs/${org.orgId}/usage/daily${query}`, { key });

describe('the org at a glance', () => {
  it('sums every key per UTC day, zero-filled to today, with the busiest keys first', async () => {
    const org = await createOrg(app().client, 'Glance');
    const keys = [];
    for (let i = 0; i < 7; i++) keys.push(await createKey(app().client, org, { name: `k${i}` }));
    const [a, b] = keys as [TestKey, TestKey];
    await rollup(org, a, dayAgo(0), { requests: 10, errors_4xx: 2, limited: 1 });
    await rollup(org, b, dayAgo(0), { requests: 6, errors_5xx: 1, denied: 3 });
    await rollup(org, a, dayAgo(29), { requests: 7 });
    // Outside the 30 days, and another org's: neither counts.
    await rollup(org, b, dayAgo(30), { requests: 1000 });
    const other = await createOrg(app().client, 'Other glance');
    await rollup(other, await createKey(app().client, other), dayAgo(0), { requests: 99 });
    for (const [i, k] of keys.slice(2).entries()) {
      await rollup(org, k, dayAgo(1), { requests: i + 1 });
    }

    const res = await trend(org);
    expect(res.status).toBe(200);
    const { series, busiest } = res.body;
    expect(series).toHaveLength(30);
    expect(series[0].start).toBe(`${dayAgo(29)}T00:00:00.000Z`);
    expect(series[29]).toEqual({
      start: `${dayAgo(0)}T00:00:00.000Z`,
      requests: 16,
      errors_4xx: 2,
      errors_5xx: 1,
      denied: 3,
      limited: 1,
    });
    expect(series[0].requests).toBe(7);
    expect(series[28].requests).toBe(1 + 2 + 3 + 4 + 5);
    expect(series.slice(1, 28).every((s: { requests: number }) => s.requests === 0)).toBe(true);
    expect(res.body.to).toBe(new Date(Date.parse(`${dayAgo(0)}T00:00:00Z`) + DAY_MS).toISOString());
    // Five, most requests first: k0 (17), k1 (6), k6 (5), k5 (4), k4 (3); k3 and k2 left out.
    expect(busiest.map((k: { name: string }) => k.name)).toEqual(['k0', 'k1', 'k6', 'k5', 'k4']);
    expect(busiest[0]).toMatchObject({ key_id: a.id, requests: 17, revoked: false });

    const week = await trend(org, '?days=7');
    expect(week.body.series).toHaveLength(7);
    expect(week.body.busiest[0]).toMatchObject({ key_id: a.id, requests: 10 });
  });

  it('refuses a window outside 1–90 days and a key without usage:read', async () => {
    const org = await createOrg(app().client, 'Glance bounds');
    expectProblem(await trend(org, '?days=0'), 400, 'validation_failed');
    expectProblem(await trend(org, '?days=91'), 400, 'validation_failed');
    const keysOnly = await createKey(app().client, org, { scopes: ['keys:read'] });
    expectProblem(await trend(org, '', keysOnly.key), 403, 'insufficient_scope');
  });
});
