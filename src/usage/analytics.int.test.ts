import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { TestClock } from '../testing/clock.ts';
import {
  createKey,
  createOrg,
  reportEvents,
  type TestKey,
  type TestOrg,
} from '../testing/factories.ts';
import { bucketOf } from './histogram.ts';
import { encodeCursor } from '../http/cursor.ts';
import { orgUsage, spikeWindows } from './analytics.queries.ts';

const firstPage = {
  status: undefined,
  dormant: undefined,
  limit: 50,
  after: undefined,
} as const;

/** The spike flag of one key at `now`, with `factor` and no minimum (the rule's threshold alone). */
async function spikeFlag(orgId: string, keyId: string, now: Date, factor: number) {
  const { rows } = await orgUsage(
    app.kt.database.db,
    { orgId, now, dormantBefore: new Date(0), spikeFactor: factor, spikeMin: 0 },
    { ...firstPage, sort: 'name', order: 'asc' },
  );
  return rows.find((r) => r.key_id === keyId)?.spike;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const dbUrl = useTestDatabase();
const clock = new TestClock();
let app: TestApp;
let worker: Worker;

beforeAll(async () => {
  // The API's own calls are not tracked here: every figure comes from the reported events.
  app = await startTestApp(dbUrl(), {
    clock,
    config: {
      usage: { tracking: false, flushIntervalMs: 50, batchSize: 1000, bufferMax: 100_000 },
    },
  });
  worker = await startWorker(app.kt);
});
beforeEach(() => {
  clock.offsetMs = 0;
});
afterAll(async () => {
  await worker.stop();
  await app.close();
});

async function eventsStored(orgId: string): Promise<number> {
  const { rows } = await sql<{
    n: number;
  }>`select count(*)::int as n from api_key_usage_events where org_id = ${orgId}`.execute(
    app.kt.database.db,
  );
  return rows[0]?.n ?? 0;
}

async function orgWithWriter(name: string) {
  const org = await createOrg(app.client, name);
  const writer = await createKey(app.client, org, { name: 'writer', scopes: ['events:write'] });
  return { org, writer };
}

const at = (ms: number) => new Date(ms).toISOString();
const usage = (org: TestOrg, query = '') =>
  app.client.get(`/api/orgs/${org.orgId}/api-keys/usage${query}`, { key: org.adminKey });
const rowOf = (body: { data: { key_id: string }[] }, key: TestKey): any =>
  body.data.find((d) => d.key_id === key.id);

describe('org usage: dormant keys', () => {
  it('flags by last use and creation age, never revoked keys, and follows dormant_days', async () => {
    clock.offsetMs = 0;
    const { org, writer } = await orgWithWriter('Dormant');
    const used = await createKey(app.client, org, { name: 'used' });
    const neverUsed = await createKey(app.client, org, { name: 'never used' });
    const revoked = await createKey(app.client, org, { name: 'revoked' });
    await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${revoked.id}`, { key: org.adminKey });
    await reportEvents(app.client, org, writer.key, [
      { key_id: used.id, occurred_at: at(Date.now() - 60_000) },
    ]);
    await waitFor(async () => (await eventsStored(org.orgId)) === 1);
    clock.offsetMs = 10 * DAY;
    const young = await createKey(app.client, org, { name: 'young' });
    const d5 = (await usage(org, '?dormant_days=5&limit=500')).body;
    expect(rowOf(d5, used)?.dormant).toBe(true);
    expect(rowOf(d5, neverUsed)?.dormant).toBe(true);
    expect(rowOf(d5, revoked)?.dormant).toBe(false);
    expect(rowOf(d5, young)?.dormant).toBe(false);
    expect(d5.dormant_after_days).toBe(5);
    const d30 = (await usage(org, '?dormant_days=30')).body;
    expect(rowOf(d30, used)?.dormant).toBe(false);
    expect(rowOf(d30, neverUsed)?.dormant).toBe(false);
    const onlyDormant = (await usage(org, '?dormant_days=5&dormant=true')).body;
    expect(onlyDormant.data.map((d: { name: string }) => d.name).sort()).toEqual([
      'admin',
      'never used',
      'used',
      'writer',
    ]);
    clock.offsetMs = 0;
  });
});

describe('org usage: spike', () => {
  it('flags 3× the prior daily mean and at least 100, and nothing below either threshold', async () => {
    const { org, writer } = await orgWithWriter('Spikes');
    const spiky = await createKey(app.client, org, { name: 'spiky' });
    const small = await createKey(app.client, org, { name: 'small' });
    const steady = await createKey(app.client, org, { name: 'steady' });
    const now = Date.now();
    // The steady week is reported while the clock stands a day back (the 7-day report window).
    clock.offsetMs = -DAY;
    const week = (key: TestKey, perDay: number) =>
      Array.from({ length: 7 * perDay }, (_, i) => ({
        key_id: key.id,
        occurred_at: at(
          now - 8 * DAY + 2 * HOUR + Math.floor((i * (7 * DAY - 4 * HOUR)) / (7 * perDay)),
        ),
      }));
    await reportEvents(app.client, org, writer.key, [
      ...week(spiky, 20),
      ...week(small, 20),
      ...week(steady, 50),
    ]);
    clock.offsetMs = 0;
    const lastDay = (key: TestKey, n: number) =>
      Array.from({ length: n }, (_, i) => ({
        key_id: key.id,
        occurred_at: at(now - 20 * HOUR + i * 1000),
      }));
    await reportEvents(app.client, org, writer.key, [
      ...lastDay(spiky, 300),
      ...lastDay(small, 70),
      ...lastDay(steady, 120),
    ]);
    await waitFor(async () => (await eventsStored(org.orgId)) === 7 * 90 + 490, {
      timeoutMs: 15_000,
    });
    const body = (await usage(org)).body;
    expect(rowOf(body, spiky)).toMatchObject({ spike: true, requests_24h: 300 });
    expect(rowOf(body, small)).toMatchObject({ spike: false, requests_24h: 70 });
    expect(rowOf(body, steady)).toMatchObject({ spike: false, requests_24h: 120 });
    // A fractional factor (KEYTRAIL_SPIKE_FACTOR=2.3): 120 ≥ 2.3 × 50 flags the steady key too.
    const direct = await orgUsage(
      app.kt.database.db,
      {
        orgId: org.orgId,
        now: new Date(),
        dormantBefore: new Date(0),
        spikeFactor: 2.3,
        spikeMin: 100,
      },
      {
        sort: 'name',
        order: 'asc',
        status: undefined,
        dormant: undefined,
        limit: 50,
        after: undefined,
      },
    );
    expect(direct.rows.find((r) => r.key_id === steady.id)?.spike).toBe(true);
    expect(direct.rows.find((r) => r.key_id === small.id)?.spike).toBe(false);
    // The rollups the ingest wrote give the raw events' own sums: the flag turns at exactly the
    // threshold those events make (the baseline's whole days come from the daily rollup).
    const when = new Date();
    const { since24h, since8d } = spikeWindows(when);
    for (const [name, key] of Object.entries({ spiky, small, steady })) {
      const { rows } = await sql<{ last24: number; prior: number }>`
        select count(*) filter (where occurred_at >= ${since24h})::int as last24,
          count(*) filter (where occurred_at < ${since24h})::int as prior
        from api_key_usage_events where key_id = ${key.id} and occurred_at >= ${since8d}`.execute(
        app.kt.database.db,
      );
      const { last24, prior } = rows[0] ?? { last24: 0, prior: 0 };
      const threshold = (last24 * 7) / prior;
      const flag = (factor: number) => spikeFlag(org.orgId, key.id, when, factor);
      expect(await flag(threshold * (1 - 1e-9)), name).toBe(true);
      expect(await flag(threshold * (1 + 1e-9)), name).toBe(false);
    }
  });
});

describe('org usage: summary, sort and pages', () => {
  it('matches figures computed independently and pages by last use, nulls last', async () => {
    const { org, writer } = await orgWithWriter('Summary');
    const keys = [];
    for (let i = 0; i < 6; i++) keys.push(await createKey(app.client, org, { name: `k${i}` }));
    const counts = [5, 0, 12, 1, 0, 7];
    const now = Date.now();
    const events = keys.flatMap((k, i) =>
      Array.from({ length: counts[i] ?? 0 }, (_, j) => ({
        key_id: k.id,
        occurred_at: at(now - (i + 1) * 60_000 - j),
      })),
    );
    await reportEvents(app.client, org, writer.key, events);
    await waitFor(async () => (await eventsStored(org.orgId)) === 25);
    await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${keys[4]?.id}`, {
      key: org.adminKey,
    });
    const body = (await usage(org, '?limit=3')).body;
    // 6 keys + admin + writer = 8 keys; 7 active (k4 revoked); never used among active: k1, admin, writer.
    expect(body.summary).toEqual({
      total_keys: 8,
      active_keys: 7,
      dormant_keys: 0,
      never_used_keys: 3,
      total_requests: 25,
      average_requests_per_key: 3.13,
      most_used: { key_id: keys[2]?.id, name: 'k2', request_count: 12 },
      least_used: { key_id: org.adminKeyId, name: 'admin', request_count: 0 },
    });
    expect(Date.parse(body.data_as_of)).toBeLessThanOrEqual(Date.now());
    const seen: { name: string; last_used_at: string | null }[] = [...body.data];
    let cursor = body.next_cursor;
    while (cursor) {
      const page = (await usage(org, `?limit=3&cursor=${cursor}`)).body;
      seen.push(...page.data);
      cursor = page.next_cursor;
    }
    expect(seen.slice(0, 4).map((s) => s.name)).toEqual(['k0', 'k2', 'k3', 'k5']);
    expect(seen.slice(4).every((s) => s.last_used_at === null)).toBe(true);
    expect(new Set(seen.map((s) => s.name)).size).toBe(8);
    const byCount = (await usage(org, '?sort=request_count&limit=2')).body;
    expect(byCount.data.map((d: { name: string }) => d.name)).toEqual(['k2', 'k5']);
    const bad = await usage(org, `?sort=name&cursor=${body.next_cursor}`);
    expect(bad.status).toBe(400);
    // A cursor whose value does not fit its sort's type is refused, not cast into a 500.
    const forged = encodeCursor(['request_count', 'desc', 'lots', keys[0]?.id ?? '']);
    const tampered = await usage(org, `?sort=request_count&cursor=${forged}`);
    expect(tampered.status).toBe(400);
    expect(tampered.body.code).toBe('validation_failed');
  });
});

describe('key usage', () => {
  it('merges percentiles from histograms within one bucket of the exact values', async () => {
    const { org, writer } = await orgWithWriter('Latency');
    const k = await createKey(app.client, org);
    const now = Date.now();
    const latencies = Array.from(
      { length: 600 },
      (_, i) => ((i * 7919) % 997) / 3 + (i % 5 === 0 ? 400 : 0),
    );
    await reportEvents(
      app.client,
      org,
      writer.key,
      latencies.map((l, i) => ({
        key_id: k.id,
        occurred_at: at(now - (i % 3) * DAY - 1000 * i),
        latency_ms: l,
        status: i % 10 === 0 ? 503 : i % 6 === 0 ? 404 : 200,
        route: i % 2 === 0 ? '/v1/a/:id' : '/v1/b',
      })),
    );
    await waitFor(async () => (await eventsStored(org.orgId)) === 600);
    const res = await app.client.get(`/api/orgs/${org.orgId}/api-keys/${k.id}/usage`, {
      key: org.adminKey,
    });
    expect(res.status).toBe(200);
    const sorted = latencies
      .map((l) => Math.fround(Math.round(l * 1000) / 1000))
      .sort((a, b) => a - b);
    for (const [q, field] of [
      [0.5, 'p50_latency_ms'],
      [0.95, 'p95_latency_ms'],
      [0.99, 'p99_latency_ms'],
    ] as const) {
      const exact = sorted[Math.ceil(q * sorted.length) - 1] ?? 0;
      expect(Math.abs(bucketOf(res.body.window[field]) - bucketOf(exact))).toBeLessThanOrEqual(1);
    }
    const e5 = latencies.filter((_, i) => i % 10 === 0).length;
    const e4 = latencies.filter((_, i) => i % 10 !== 0 && i % 6 === 0).length;
    expect(res.body.window).toMatchObject({ requests: 600, errors_4xx: e4, errors_5xx: e5 });
    expect(res.body.window.error_rate).toBeCloseTo((e4 + e5) / 600, 3);
    expect(res.body.window.avg_latency_ms).toBeCloseTo(sorted.reduce((a, b) => a + b, 0) / 600, 1);
    expect(res.body.totals.request_count).toBe(600);
    expect(res.body.key.id).toBe(k.id);
    expect(res.body.top_endpoints.map((e: { route: string }) => e.route).sort()).toEqual([
      '/v1/a/:id',
      '/v1/b',
    ]);
    expect(res.body.recent_events).toHaveLength(20);
    expect(res.body.today.requests).toBeGreaterThan(0);
  });

  it('counts refusals by a limit as limited: in totals, the org rows and the trend, never as use', async () => {
    const { org, writer } = await orgWithWriter('Limited');
    const k = await createKey(app.client, org);
    const hourStart = Math.floor(Date.now() / HOUR) * HOUR;
    const used = hourStart - 2 * HOUR + 1000;
    const refused = (outcome: string, n: number, from: number) =>
      Array.from({ length: n }, (_, i) => ({
        key_id: k.id,
        occurred_at: at(from + i * 1000),
        status: outcome === 'ip_denied' ? 403 : 429,
        outcome,
      }));
    await reportEvents(app.client, org, writer.key, [
      { key_id: k.id, occurred_at: at(used) },
      { key_id: k.id, occurred_at: at(used + 500), outcome: 'revoked', status: 401 },
      ...refused('rate_limited', 3, hourStart - HOUR + 5000),
      ...refused('quota_exceeded', 2, hourStart - HOUR + 9000),
      ...refused('ip_denied', 1, hourStart - HOUR + 20_000),
    ]);
    await waitFor(async () => (await eventsStored(org.orgId)) === 8);
    const res = await app.client.get(
      `/api/orgs/${org.orgId}/api-keys/${k.id}/usage?granularity=hour`,
      { key: org.adminKey },
    );
    expect(res.status).toBe(200);
    expect(res.body.totals).toMatchObject({
      request_count: 1,
      denied_count: 1,
      limited_count: 6,
      last_used_at: at(used),
      last_limited_at: at(hourStart - HOUR + 20_000),
    });
    expect(res.body.window).toMatchObject({ requests: 1, denied: 1, limited: 6 });
    const point = (start: number) =>
      res.body.series.find((s: { start: string }) => s.start === at(start));
    expect(point(hourStart - 2 * HOUR)).toMatchObject({ requests: 1, denied: 1, limited: 0 });
    expect(point(hourStart - HOUR)).toMatchObject({ requests: 0, denied: 0, limited: 6 });
    const row = rowOf((await usage(org, '?limit=500')).body, k);
    expect(row).toMatchObject({
      request_count: 1,
      denied_count: 1,
      limited_count: 6,
      last_used_at: at(used),
      last_limited_at: at(hourStart - HOUR + 20_000),
    });
    const events = await app.client.get(
      `/api/orgs/${org.orgId}/usage-events?key_id=${k.id}&outcome=quota_exceeded`,
      { key: org.adminKey },
    );
    expect(events.body.data.map((e: { outcome: string }) => e.outcome)).toEqual([
      'quota_exceeded',
      'quota_exceeded',
    ]);
  });

  it('lists the 20 latest events newest first across monthly partitions', async () => {
    const { org, writer } = await orgWithWriter('Recent');
    const k = await createKey(app.client, org);
    const now = Date.now();
    // 15 events two months back (reported while the clock stands there), 3 from today: the
    // latest month alone holds fewer than 20, so older partitions must fill the list.
    clock.offsetMs = -62 * DAY;
    await reportEvents(
      app.client,
      org,
      writer.key,
      Array.from({ length: 15 }, (_, i) => ({
        key_id: k.id,
        occurred_at: at(now - 62 * DAY - i * 60_000),
      })),
    );
    clock.offsetMs = 0;
    await reportEvents(
      app.client,
      org,
      writer.key,
      Array.from({ length: 3 }, (_, i) => ({ key_id: k.id, occurred_at: at(now - i * 1000) })),
    );
    await waitFor(async () => (await eventsStored(org.orgId)) === 18);
    const res = await app.client.get(`/api/orgs/${org.orgId}/api-keys/${k.id}/usage`, {
      key: org.adminKey,
    });
    expect(res.status).toBe(200);
    const { rows } = await sql<{ event_id: string }>`select event_id from api_key_usage_events
      where key_id = ${k.id} order by occurred_at desc, event_id desc`.execute(app.kt.database.db);
    expect(res.body.recent_events.map((e: { event_id: string }) => e.event_id)).toEqual(
      rows.map((r) => r.event_id),
    );
  });

  it('zero-fills day and hour series with the right number of UTC buckets', async () => {
    const { org, writer } = await orgWithWriter('Series');
    const k = await createKey(app.client, org);
    const now = Date.now();
    await reportEvents(app.client, org, writer.key, [
      { key_id: k.id, occurred_at: at(now - 3 * DAY) },
      { key_id: k.id, occurred_at: at(now - 3 * HOUR) },
    ]);
    await waitFor(async () => (await eventsStored(org.orgId)) === 2);
    const base = `/api/orgs/${org.orgId}/api-keys/${k.id}/usage`;
    const dayFrom = new Date(now - 20 * DAY);
    const to = new Date(now);
    const days = await app.client.get(`${base}?from=${at(now - 10 * DAY)}&to=${at(now)}`, {
      key: org.adminKey,
    });
    expect(days.body.series).toHaveLength(
      Math.ceil(to.getTime() / DAY) - Math.floor((now - 10 * DAY) / DAY),
    );
    expect(
      days.body.series.every((s: { start: string }) => s.start.endsWith('T00:00:00.000Z')),
    ).toBe(true);
    expect(days.body.series.reduce((a: number, s: { requests: number }) => a + s.requests, 0)).toBe(
      2,
    );
    expect(days.body.series.filter((s: { requests: number }) => s.requests === 0).length).toBe(
      days.body.series.length - 2,
    );
    const hours = await app.client.get(
      `${base}?granularity=hour&from=${at(now - 48 * HOUR)}&to=${at(now)}`,
      { key: org.adminKey },
    );
    const expectedHours = Math.ceil(now / HOUR) - Math.floor((now - 48 * HOUR) / HOUR);
    expect(hours.body.series).toHaveLength(expectedHours);
    expect(hours.body.series.every((s: { start: string }) => s.start.endsWith(':00:00.000Z'))).toBe(
      true,
    );
    expect(hours.body.window.requests).toBe(1);
    const tooLong = await app.client.get(`${base}?granularity=hour&from=${at(dayFrom.getTime())}`, {
      key: org.adminKey,
    });
    expect(tooLong.status).toBe(400);
  });
});

describe('key usage: rotation', () => {
  it("counts the old key's requests from the rotation instant, not from its hour", async () => {
    const { org, writer } = await orgWithWriter('Rotation');
    const old = await createKey(app.client, org, { name: 'billing' });
    // The rotation happens half past an hour some 50 hours ago, so the old key's events of that
    // hour fall on both sides of it, and later ones on the next UTC days.
    const now = Date.now();
    const halfPast = Math.floor((now - 50 * HOUR) / HOUR) * HOUR + 30 * 60_000;
    clock.offsetMs = halfPast - now;
    const rotated = await app.client.post(`/api/orgs/${org.orgId}/api-keys/${old.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 7 * 86_400 },
    });
    expect(rotated.status).toBe(201);
    clock.offsetMs = 0;
    const newId: string = rotated.body.api_key.id;
    const rotatedAt = Date.parse(rotated.body.api_key.created_at);
    const oldPrefix: string = rotated.body.previous.prefix;
    const minute = 60_000;
    await reportEvents(app.client, org, writer.key, [
      { key_id: old.id, occurred_at: at(rotatedAt - 2 * HOUR) },
      { key_id: old.id, occurred_at: at(rotatedAt - 20 * minute) },
      { key_id: old.id, occurred_at: at(rotatedAt - 1) },
      { key_id: old.id, occurred_at: at(rotatedAt) },
      { key_id: old.id, occurred_at: at(rotatedAt + 10 * minute) },
      { key_id: old.id, occurred_at: at(rotatedAt + HOUR) },
      { key_id: old.id, occurred_at: at(rotatedAt + 2 * HOUR + 5 * minute) },
      { key_id: old.id, occurred_at: at(rotatedAt + 26 * HOUR) },
      { key_id: old.id, occurred_at: at(rotatedAt + 49 * HOUR) },
      { key_id: newId, occurred_at: at(rotatedAt + HOUR) },
    ]);
    await waitFor(async () => (await eventsStored(org.orgId)) === 10);
    // After its first UTC day the count reads the daily rollup: pruning hourly rows after that
    // day changes nothing.
    const nextDay = Math.ceil((Math.ceil(rotatedAt / HOUR) * HOUR) / DAY) * DAY;
    await sql`delete from api_key_usage_hourly where key_id = ${old.id}
      and hour >= ${new Date(nextDay)}`.execute(app.kt.database.db);

    const newPage = await app.client.get(`/api/orgs/${org.orgId}/api-keys/${newId}/usage`, {
      key: org.adminKey,
    });
    expect(newPage.status).toBe(200);
    expect(newPage.body.rotation).toEqual({
      previous: {
        key_id: old.id,
        name: 'billing',
        prefix: oldPrefix,
        status: 'active',
        rotated_at: new Date(rotatedAt).toISOString(),
        expires_at: new Date(rotatedAt + 7 * DAY).toISOString(),
        revoked_at: null,
        requests_since_rotation: 6,
        last_used_at: at(rotatedAt + 49 * HOUR),
        last_used_ip: null,
      },
      replaced_by: null,
    });
    const oldPage = await app.client.get(`/api/orgs/${org.orgId}/api-keys/${old.id}/usage`, {
      key: org.adminKey,
    });
    expect(oldPage.body.rotation).toEqual({
      previous: null,
      replaced_by: {
        key_id: newId,
        name: 'billing',
        prefix: rotated.body.api_key.prefix,
        rotated_at: new Date(rotatedAt).toISOString(),
      },
    });
  });
});

describe('raw events: keyset pagination', () => {
  it('walks 10,000 events sharing one timestamp without duplicates or gaps', async () => {
    const { org, writer } = await orgWithWriter('Keyset');
    const k = await createKey(app.client, org);
    const t = at(Date.now() - HOUR);
    const ids = Array.from({ length: 10_000 }, () => uuidv7());
    await reportEvents(
      app.client,
      org,
      writer.key,
      ids.map((id) => ({ event_id: id, key_id: k.id, occurred_at: t })),
    );
    await waitFor(async () => (await eventsStored(org.orgId)) === 10_000, { timeoutMs: 20_000 });
    const reader = await createKey(app.client, org, { scopes: ['events:read'] });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `?limit=777${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await app.client.get(`/api/orgs/${org.orgId}/usage-events${q}`, {
        key: reader.key,
      });
      expect(page.status).toBe(200);
      seen.push(...page.body.data.map((e: { event_id: string }) => e.event_id));
      cursor = page.body.next_cursor;
      pages += 1;
    } while (cursor);
    expect(pages).toBe(13);
    expect(seen).toHaveLength(10_000);
    expect(new Set(seen)).toEqual(new Set(ids));
    expect(seen).toEqual([...ids].sort());
  });
});

describe('org usage: spike windows at every hour of the day', () => {
  it('sums whole days from the daily rollup and the ragged ends hourly: the same as 192 hours', async () => {
    const org = await createOrg(app.client, 'Windows');
    const key = await createKey(app.client, org, { name: 'windows' });
    // Hourly rows, each a different count, and the daily rows they add up to (as the ingest
    // writes both from the same events): nine days, then each hour of the tenth as "now" reaches
    // it, so no row is ever in the future.
    const start = Date.UTC(2026, 0, 10);
    const perHour = (ms: number): number => (((ms / HOUR) * 7919) % 97) + 1;
    const hours: number[] = [];
    const add = async (from: number, count: number) => {
      const more = Array.from({ length: count }, (_, i) => from + i * HOUR);
      hours.push(...more);
      await sql`insert into api_key_usage_hourly
          (key_id, org_id, hour, requests, errors_4xx, errors_5xx, denied, latency_sum_ms, latency_hist)
        select ${key.id}::uuid, ${org.orgId}::uuid, to_timestamp(h / 1000.0), n, 0, 0, 0, 0, '{}'
        from unnest(${more}::float8[], ${more.map(perHour)}::int8[]) as u(h, n)`.execute(
        app.kt.database.db,
      );
      await sql`insert into api_key_usage_daily as d
          (key_id, org_id, day, requests, errors_4xx, errors_5xx, denied, latency_sum_ms, latency_hist)
        select ${key.id}::uuid, ${org.orgId}::uuid, (to_timestamp(h / 1000.0) at time zone 'UTC')::date,
          sum(n), 0, 0, 0, 0, '{}'
        from unnest(${more}::float8[], ${more.map(perHour)}::int8[]) as u(h, n) group by 3
        on conflict (org_id, key_id, day) do update set requests = d.requests + excluded.requests`.execute(
        app.kt.database.db,
      );
    };
    await add(start, 9 * 24);
    const sum = (from: number, to: number): number =>
      hours.filter((h) => h >= from && h < to).reduce((n, h) => n + perHour(h), 0);
    const spikeAt = (now: number, factor: number) =>
      spikeFlag(org.orgId, key.id, new Date(now), factor);
    // Every hour of the tenth day (and a minute past each): the windows' ends fall everywhere.
    for (let h = 0; h < 24; h++) {
      await add(start + 9 * DAY + h * HOUR, 1);
      const now = start + 9 * DAY + h * HOUR + (h % 2) * 60_000;
      const since24h = now - (now % HOUR) - 23 * HOUR;
      const last24 = sum(since24h, now + 1);
      const prior = sum(since24h - 7 * DAY, since24h);
      // The flag's threshold, exactly: a baseline off by one request moves it by ≥ 1/20,000.
      const threshold = (last24 * 7) / prior;
      expect(await spikeAt(now, threshold * (1 - 1e-9)), `hour ${h}`).toBe(true);
      expect(await spikeAt(now, threshold * (1 + 1e-9)), `hour ${h}`).toBe(false);
    }
  });
});
