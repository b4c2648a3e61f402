import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { ingestUsageHandler } from '../../workers/ingest-usage.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import {
  createKey,
  createOrg,
  reportEvents,
  usageJobsFor,
  type TestKey,
  type TestOrg,
} from '../testing/factories.ts';
import { createIngester } from './usage.ingest.ts';
import { encodePayload } from './usage.jobs.ts';
import { rebuildRollups } from './usage.rebuild.ts';
import { ensurePartitionsAhead } from './usage.partitions.ts';
import type { UsageEvent } from './usage.types.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let org: TestOrg;

beforeAll(async () => {
  app = await startTestApp(dbUrl());
  await ensurePartitionsAhead(app.kt.database.db, new Date(), 2);
  org = await createOrg(app.client, 'Ingest');
});
afterAll(async () => app.close());

function events(key: TestKey, count: number, startMs = Date.now() - 3_600_000): UsageEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    eventId: uuidv7(),
    orgId: org.orgId,
    keyId: key.id,
    occurredAt: startMs + i * 1000,
    method: i % 3 === 0 ? 'POST' : 'GET',
    route: `/v1/things/${i % 4 === 0 ? ':id' : 'list'}`,
    status: i % 10 === 0 ? 500 : i % 7 === 0 ? 404 : 200,
    latencyMs: Math.fround(((i * 37) % 900) / 3),
    ip: `10.2.0.${i % 250}`,
    userAgent: 'bench',
    outcome: i % 50 === 0 ? 'revoked' : i % 50 === 25 ? 'rate_limited' : 'success',
  }));
}

const totals = (keyId: string) =>
  app.kt.database.db
    .selectFrom('api_key_usage_totals')
    .selectAll()
    .where('key_id', '=', keyId)
    .executeTakeFirstOrThrow();

const rowCount = async (table: string, keyId: string) => {
  const { rows } = await sql<{
    n: number;
  }>`select count(*)::int as n from ${sql.table(table)} where key_id = ${keyId}`.execute(
    app.kt.database.db,
  );
  return rows[0]?.n ?? 0;
};

/** The worker's job handler over a fresh ingester (no month cache carried between tests). */
const newHandler = () =>
  ingestUsageHandler({
    ingester: createIngester(app.kt.database),
    logger: app.kt.logger,
    metrics: app.kt.metrics,
  });

const successes = (list: UsageEvent[]) => list.filter((e) => e.outcome === 'success').length;

describe('exactly-once ingest', () => {
  it('counts nothing twice when the same job is processed twice', async () => {
    const k = await createKey(app.client, org);
    const batch = events(k, 300);
    const handler = newHandler();
    const job = { id: uuidv7(), name: 'usage.ingest', data: encodePayload(batch) } as never;
    expect(await handler([job])).toEqual([{ id: (job as { id: string }).id, status: 'completed' }]);
    await handler([job]);
    const t = await totals(k.id);
    expect(t.request_count).toBe(successes(batch));
    expect(t.denied_count).toBe(batch.filter((e) => e.outcome === 'revoked').length);
    expect(t.limited_count).toBe(batch.filter((e) => e.outcome === 'rate_limited').length);
    expect(t.limited_count).toBe(6);
    expect(await rowCount('api_key_usage_events', k.id)).toBe(300);
  });

  it('leaves aggregates equal to the distinct events when two workers race on overlapping batches', async () => {
    const k = await createKey(app.client, org);
    const all = events(k, 1000);
    const a = createIngester(app.kt.database);
    const b = createIngester(app.kt.database);
    await Promise.all([
      a.ingest(all.slice(0, 600)),
      b.ingest(all.slice(400)),
      a.ingest(all.slice(200, 800)),
      b.ingest([...all.slice(900), ...all.slice(900)]),
    ]);
    const t = await totals(k.id);
    expect(t.request_count).toBe(successes(all));
    expect(t.errors_5xx).toBe(all.filter((e) => e.outcome === 'success' && e.status >= 500).length);
    const { rows } = await sql<{ n: number }>`
      select sum(requests)::int as n from api_key_usage_daily where key_id = ${k.id}`.execute(
      app.kt.database.db,
    );
    expect(rows[0]?.n).toBe(successes(all));
    expect(await rowCount('api_key_usage_events', k.id)).toBe(1000);
  });

  it('sends an invalid payload to the dead-letter queue and still ingests the rest of the batch', async () => {
    const k = await createKey(app.client, org);
    const good = events(k, 10);
    const handler = newHandler();
    const results = await handler([
      { id: 'bad', name: 'usage.ingest', data: { v: 1, nonsense: true } },
      { id: 'good', name: 'usage.ingest', data: encodePayload(good) },
    ] as never);
    expect(results).toEqual([
      { id: 'bad', status: 'deadletter' },
      { id: 'good', status: 'completed' },
    ]);
    expect((await totals(k.id)).request_count).toBe(successes(good));
  });

  it('retries the jobs of a failed batch one by one: only the job the database refuses fails', async () => {
    const k = await createKey(app.client, org);
    const good = events(k, 10);
    // A key that does not exist: its rollup rows violate the foreign key, failing the batch.
    const unknown = { id: '00000000-0000-4000-8000-00000000dead' } as TestKey;
    const handler = newHandler();
    const results = await handler([
      { id: 'good', name: 'usage.ingest', data: encodePayload(good) },
      { id: 'orphan', name: 'usage.ingest', data: encodePayload(events(unknown, 3)) },
    ] as never);
    expect(results).toEqual([
      { id: 'good', status: 'completed' },
      { id: 'orphan', status: 'failed', output: { error: 'ingest failed' } },
    ]);
    expect((await totals(k.id)).request_count).toBe(successes(good));
    const logged = app.logs.join('');
    expect(logged).toContain('usage batch failed; retrying jobs one by one');
    expect(logged).toContain('usage job failed; pg-boss will retry it');
  });

  it('refuses, alone, a job that puts a key under an org it does not belong to', async () => {
    // Since migration 0014 a rollup row references its key through (org_id, key_id): events that
    // name another org's key fail like a key that does not exist, and store nothing.
    const k = await createKey(app.client, org);
    const other = await createOrg(app.client, 'Other');
    const mine = events(k, 4);
    const theirs = events(k, 3).map((e) => ({ ...e, orgId: other.orgId }));
    const results = await newHandler()([
      { id: 'mine', name: 'usage.ingest', data: encodePayload(mine) },
      { id: 'theirs', name: 'usage.ingest', data: encodePayload(theirs) },
    ] as never);
    expect(results).toEqual([
      { id: 'mine', status: 'completed' },
      { id: 'theirs', status: 'failed', output: { error: 'ingest failed' } },
    ]);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from api_key_usage_events
      where key_id = ${k.id} and org_id = ${other.orgId}`.execute(app.kt.database.db);
    expect(rows[0]?.n).toBe(0);
    expect(await rowCount('api_key_usage_events', k.id)).toBe(4);
    expect((await totals(k.id)).request_count).toBe(successes(mine));
  });

  it('stores an event id seen at two times as two rows, and each exact repeat once', async () => {
    const k = await createKey(app.client, org);
    const [first] = events(k, 1);
    if (!first) throw new Error('no event');
    const later = { ...first, occurredAt: first.occurredAt + 1000 };
    const ingester = createIngester(app.kt.database);
    expect(await ingester.ingest([first, later, { ...later }, { ...first }, { ...later }])).toEqual(
      {
        received: 5,
        inserted: 2,
        expired: 0,
      },
    );
    expect(await rowCount('api_key_usage_events', k.id)).toBe(2);
    expect(await ingester.ingest([])).toEqual({ received: 0, inserted: 0, expired: 0 });
  });

  it("keeps events of two orgs with the same id and time apart: one org's never hides the other's", async () => {
    const other = await createOrg(app.client, 'Ingest other');
    const mine = await createKey(app.client, org);
    const theirs = await createKey(app.client, other);
    const list = events(mine, 6).filter((e) => e.outcome === 'success');
    // Org B sends the very ids and times of org A's events (a probe, or a chance collision).
    const copies = list.map((e) => ({ ...e, orgId: other.orgId, keyId: theirs.id }));
    const ingester = createIngester(app.kt.database);
    expect(await ingester.ingest(list)).toEqual({ received: 5, inserted: 5, expired: 0 });
    // Both the fast path (COPY) and, mixed with a replay of A's, the fallback insert take them.
    expect(await ingester.ingest(copies.slice(0, 2))).toEqual({
      received: 2,
      inserted: 2,
      expired: 0,
    });
    expect(await ingester.ingest([...list, ...copies])).toEqual({
      received: 10,
      inserted: 3,
      expired: 0,
    });
    expect((await totals(mine.id)).request_count).toBe(5);
    expect((await totals(theirs.id)).request_count).toBe(5);
    expect(await rowCount('api_key_usage_events', theirs.id)).toBe(5);
  });

  it('accepts the same event id from two orgs through POST /usage-events, each counted once', async () => {
    const a = await createOrg(app.client, 'Report A');
    const b = await createOrg(app.client, 'Report B');
    const [ka, kb] = [await createKey(app.client, a), await createKey(app.client, b)];
    const [wa, wb] = [
      await createKey(app.client, a, { scopes: ['events:write'] }),
      await createKey(app.client, b, { scopes: ['events:write'] }),
    ];
    const shared = { event_id: uuidv7(), occurred_at: new Date().toISOString() };
    await reportEvents(app.client, a, wa.key, [{ ...shared, key_id: ka.id }]);
    await reportEvents(app.client, b, wb.key, [{ ...shared, key_id: kb.id }]);
    await reportEvents(app.client, b, wb.key, [{ ...shared, key_id: kb.id }]); // a replay
    const worker = await startWorker(app.kt);
    try {
      await waitFor(async () => (await rowCount('api_key_usage_events', kb.id)) === 1);
      await waitFor(async () => (await rowCount('api_key_usage_events', ka.id)) === 1);
      await waitFor(async () => (await totals(kb.id).catch(() => null))?.request_count === 1);
      expect((await totals(ka.id)).request_count).toBe(1);
    } finally {
      await worker.stop();
    }
  });

  it('matches stored events whatever the letter case of their ids', async () => {
    const k = await createKey(app.client, org);
    const list = events(k, 8).filter((e) => e.outcome === 'success'); // 7: the first is denied
    const ingester = createIngester(app.kt.database);
    await ingester.ingest(list.slice(0, 5));
    // The replay of 5 in upper case makes the COPY fail; the fallback's RETURNING gives lower-case
    // ids, which must still match the 2 new events of the batch.
    const upper = list.map((e) => ({ ...e, eventId: e.eventId.toUpperCase() }));
    expect(await ingester.ingest(upper)).toEqual({ received: 7, inserted: 2, expired: 0 });
    expect(await ingester.ingest([...upper, ...list])).toEqual({
      received: 14,
      inserted: 0,
      expired: 0,
    });
    expect((await totals(k.id)).request_count).toBe(7);
    expect(await rowCount('api_key_usage_events', k.id)).toBe(7);
    // One new event twice in one batch, in two letter cases: one row, counted once.
    const [twice] = events(k, 2, Date.now() - 60_000).slice(1);
    if (!twice) throw new Error('no event');
    const again = { ...twice, eventId: twice.eventId.toUpperCase() };
    expect(await ingester.ingest([twice, again])).toEqual({ received: 2, inserted: 1, expired: 0 });
    expect((await totals(k.id)).request_count).toBe(8);
    expect(await rowCount('api_key_usage_events', k.id)).toBe(8);
  });

  it('stores text with COPY delimiters and escapes byte for byte, and nulls as nulls', async () => {
    const k = await createKey(app.client, org);
    const tricky = ['back\\slash \\N \\t', 'tab\there', 'line\nbreak\r\nend', '\\N', 'ünïcödé ✓'];
    const list = events(k, tricky.length + 1).map((e, i) => ({
      ...e,
      route: `/v1/${tricky[i] ?? 'plain'}`,
      userAgent: i < tricky.length ? (tricky[i] ?? null) : null,
      ip: i < tricky.length ? e.ip : null,
    }));
    await createIngester(app.kt.database).ingest(list);
    const { rows } = await sql<{ route: string; user_agent: string | null; ip: string | null }>`
      select route, user_agent, host(ip) as ip from api_key_usage_events
      where key_id = ${k.id} order by occurred_at`.execute(app.kt.database.db);
    expect(rows).toEqual(
      list.map((e) => ({ route: e.route, user_agent: e.userAgent, ip: e.ip?.toString() ?? null })),
    );
  });

  it('creates a missing month partition inside the ingest transaction', async () => {
    const k = await createKey(app.client, org);
    const farFuture = Date.UTC(2031, 4, 15);
    await createIngester(app.kt.database).ingest(events(k, 3, farFuture));
    expect(await rowCount('api_key_usage_events_2031_05', k.id)).toBe(3);
  });

  it('drops events older than the retention, counts them, and creates no partition for their month', async () => {
    const k = await createKey(app.client, org);
    const old = Date.UTC(2021, 2, 10); // a month long pruned, or never there
    const ingester = createIngester(app.kt.database, { retentionDays: 90 });
    const fresh = events(k, 3).filter((e) => e.outcome === 'success');
    const result = await ingester.ingest([...events(k, 4, old), ...fresh]);
    expect(result).toEqual({ received: 4 + fresh.length, inserted: fresh.length, expired: 4 });
    expect(await rowCount('api_key_usage_events', k.id)).toBe(fresh.length);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_class
      where relname = 'api_key_usage_events_2021_03'`.execute(app.kt.database.db);
    expect(rows[0]?.n).toBe(0);
    // A replay of only old events stores and counts nothing.
    expect(await ingester.ingest(events(k, 2, old))).toEqual({
      received: 2,
      inserted: 0,
      expired: 2,
    });
    expect((await totals(k.id)).request_count).toBe(fresh.length);
  });

  it('does not recreate a month before the prune watermark (pruned with a shorter retention)', async () => {
    const k = await createKey(app.client, org);
    const ingester = createIngester(app.kt.database, { retentionDays: 3650 });
    // A month never pruned and never created takes late events: its partition is made.
    const late = events(k, 2, Date.UTC(2022, 1, 10)).filter((e) => e.outcome === 'success');
    expect((await ingester.ingest(late)).inserted).toBe(late.length);
    // Within this worker's retention, but pruned (`prune --retention-days 30` ran): the watermark
    // says raw events before 2023-07 are gone.
    await sql`insert into usage_prune_watermark (pruned_before) values ('2023-07-01T00:00:00Z')
      on conflict (id) do update set pruned_before = excluded.pruned_before`.execute(
      app.kt.database.db,
    );
    try {
      const result = await createIngester(app.kt.database, { retentionDays: 3650 }).ingest(
        events(k, 3, Date.UTC(2023, 5, 10)),
      );
      expect(result).toEqual({ received: 3, inserted: 0, expired: 3 });
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_class
        where relname = 'api_key_usage_events_2023_06'`.execute(app.kt.database.db);
      expect(rows[0]?.n).toBe(0);
    } finally {
      await sql`delete from usage_prune_watermark`.execute(app.kt.database.db);
    }
  });

  it('caps the distinct routes of a key and day in the per-route rollup, the rest as (other)', async () => {
    const k = await createKey(app.client, org);
    const ingester = createIngester(app.kt.database, { routesPerKeyDay: 3 });
    // Ten days back: a day no other test of this file rebuilds (their cap is the default).
    const at = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 10 * 86_400_000 + 3_600_000;
    const hits = (routes: string[], offset: number) =>
      routes.map((route, i) => ({
        ...events(k, 1, at + offset + i * 1000)[0]!,
        route,
        status: 200,
        outcome: 'success' as const,
      }));
    await ingester.ingest(hits(['/a', '/b', '/c', '/d', '/e', '/a'], 0));
    // Later batches: a known route keeps its row, a new one joins (other).
    await ingester.ingest(hits(['/c', '/f'], 60_000));
    const { rows } = await sql<{ route: string; requests: number }>`select route, requests::int
      from api_key_usage_routes_daily where key_id = ${k.id} order by route`.execute(
      app.kt.database.db,
    );
    expect(rows).toEqual([
      { route: '(other)', requests: 3 },
      { route: '/a', requests: 2 },
      { route: '/b', requests: 1 },
      { route: '/c', requests: 2 },
    ]);
    // The raw events keep every route; a rebuild with the same cap finds the same rollup.
    expect(await rowCount('api_key_usage_events', k.id)).toBe(8);
    const day = new Date(at).toISOString().slice(0, 10);
    const rebuilt = await rebuildRollups(app.kt.database.db, day, day, 35, 3);
    expect(rebuilt.differences).toEqual({
      api_key_usage_hourly: 0,
      api_key_usage_daily: 0,
      api_key_usage_routes_daily: 0,
    });
  });

  it('lets concurrent ingests create the same new month partition, none failing', async () => {
    const k = await createKey(app.client, org);
    // Months no process has seen: each round, two fresh ingesters race to create one.
    for (let round = 0; round < 6; round++) {
      const month = Date.UTC(2032, round, 10);
      const [a, b] = [createIngester(app.kt.database), createIngester(app.kt.database)];
      const results = await Promise.all([
        a.ingest(events(k, 20, month)),
        b.ingest(events(k, 20, month + 3_600_000)),
      ]);
      expect(results.map((r) => r.inserted)).toEqual([20, 20]);
    }
    expect(await rowCount('api_key_usage_events', k.id)).toBe(240);
  });

  it('does not deadlock when concurrent batches meet several new months each', async () => {
    const k = await createKey(app.client, org);
    // {M, M+1} against {M+1, M+2}, and against a plain batch of M: each transaction would hold
    // one month and wait for the other's, or for the parent table its DDL had locked.
    for (let round = 0; round < 4; round++) {
      const month = (m: number) => Date.UTC(2034 + round, m, 10);
      const fresh = () => createIngester(app.kt.database);
      const results = await Promise.all([
        fresh().ingest([...events(k, 5, month(0)), ...events(k, 5, month(1))]),
        fresh().ingest([...events(k, 5, month(1) + 60_000), ...events(k, 5, month(2))]),
        fresh().ingest(events(k, 5, month(0) + 120_000)),
      ]);
      expect(results.map((r) => r.inserted)).toEqual([10, 10, 5]);
    }
    expect(await rowCount('api_key_usage_events', k.id)).toBe(100);
  });
});

describe('rollups rebuild', () => {
  it('recomputes rollups equal to the incremental ones, and repairs damaged ones', async () => {
    const k = await createKey(app.client, org);
    // 2,000 events 90 s apart span 50 hours: starting 3 days ago they all lie before `to`
    // (today). From 2 days ago the last ones fell after midnight UTC when run after 22:00.
    const start = Date.now() - 3 * 86_400_000;
    const list = events(k, 2000, start).map((e, i) => ({ ...e, occurredAt: start + i * 90_000 }));
    const ingester = createIngester(app.kt.database);
    for (let i = 0; i < list.length; i += 250) await ingester.ingest(list.slice(i, i + 250));
    const from = new Date(start).toISOString().slice(0, 10);
    const to = new Date().toISOString().slice(0, 10);
    const snapshot = async () =>
      sql`select key_id, day, requests, errors_4xx, errors_5xx, denied, limited, latency_hist from api_key_usage_daily
          where key_id = ${k.id} order by day`.execute(app.kt.database.db);
    const before = await snapshot();
    const clean = await rebuildRollups(app.kt.database.db, from, to);
    expect(clean.differences).toEqual({
      api_key_usage_hourly: 0,
      api_key_usage_daily: 0,
      api_key_usage_routes_daily: 0,
    });
    expect((await snapshot()).rows).toEqual(before.rows);
    await sql`update api_key_usage_daily set requests = requests + 5 where key_id = ${k.id}`.execute(
      app.kt.database.db,
    );
    await sql`delete from api_key_usage_hourly where key_id = ${k.id} and hour = (select min(hour) from api_key_usage_hourly where key_id = ${k.id})`.execute(
      app.kt.database.db,
    );
    const repaired = await rebuildRollups(app.kt.database.db, from, to);
    expect(repaired.differences.api_key_usage_daily).toBe(before.rows.length);
    expect(repaired.differences.api_key_usage_hourly).toBe(1);
    expect((await snapshot()).rows).toEqual(before.rows);
  });

  it('refuses days before the oldest raw partition (they would be emptied) and malformed days', async () => {
    const db = app.kt.database.db;
    await expect(rebuildRollups(db, '2001-01-01', '2001-01-02')).rejects.toMatchObject({
      code: 'unprocessable',
      detail: expect.stringMatching(/^raw events start at \d{4}-\d{2}:/),
    });
    await expect(rebuildRollups(db, '2001-13-45', '2001-01-02')).rejects.toMatchObject({
      code: 'validation_failed',
    });
    await expect(rebuildRollups(db, '2026-02-02', '2026-02-01')).rejects.toMatchObject({
      code: 'validation_failed',
    });
  });
});

describe('reported events', () => {
  const report = (key: string, body: unknown) =>
    app.client.post(`/api/orgs/${org.orgId}/usage-events`, { key, body });

  it('accepts a batch with 202, idempotently on event_id, through the same worker', async () => {
    const writer = await createKey(app.client, org, { scopes: ['events:write'] });
    const target = await createKey(app.client, org);
    const now = Date.now();
    const batch = Array.from({ length: 5 }, (_, i) => ({
      event_id: uuidv7(),
      key_id: target.id,
      occurred_at: new Date(now - i * 1000).toISOString(),
      method: 'get',
      path: `/v2/invoices/${1000 + i}`,
      status: 200,
      latency_ms: 12.5,
      ip: '192.0.2.1',
      user_agent: 'gateway/1',
    }));
    expect((await report(writer.key, { events: batch })).body).toEqual({ accepted: 5 });
    expect((await report(writer.key, { events: batch })).status).toBe(202);
    const worker: Worker = await startWorker(app.kt);
    try {
      await waitFor(async () => (await rowCount('api_key_usage_events', target.id)) === 5, {
        timeoutMs: 10_000,
      });
      await waitFor(async () => (await totals(target.id).catch(() => null))?.request_count === 5);
      const { rows } = await sql<{ route: string; method: string }>`
        select distinct route, method from api_key_usage_events where key_id = ${target.id}`.execute(
        app.kt.database.db,
      );
      expect(rows).toEqual([{ route: '/v2/invoices/{id}', method: 'GET' }]);
    } finally {
      await worker.stop();
    }
  });

  it('rejects the whole batch with 422 naming the index for a foreign key or a time outside the window', async () => {
    const writer = await createKey(app.client, org, { scopes: ['events:write'] });
    const mine = await createKey(app.client, org);
    const other = await createOrg(app.client, 'Foreign');
    const ok = {
      key_id: mine.id,
      occurred_at: new Date().toISOString(),
      method: 'GET',
      route: '/x',
      status: 200,
      latency_ms: 1,
    };
    const foreign = await report(writer.key, { events: [ok, { ...ok, key_id: other.adminKeyId }] });
    expect(foreign.status).toBe(422);
    expect(foreign.body.errors).toEqual([
      { path: 'body.events.1.key_id', message: 'no such key in this org' },
    ]);
    const old = await report(writer.key, {
      events: [ok, ok, { ...ok, occurred_at: new Date(Date.now() - 8 * 86_400_000).toISOString() }],
    });
    expect(old.status).toBe(422);
    expect(old.body.errors[0].path).toBe('body.events.2.occurred_at');
    const many = await report(writer.key, {
      events: Array.from({ length: 7 }, () => ({ ...ok, key_id: other.adminKeyId })),
    });
    expect(many.status).toBe(422);
    expect(many.body.detail).toBe(
      `batch rejected, nothing stored: ${[0, 1, 2, 3, 4].map((i) => `body.events.${i}.key_id`).join(', ')} and 2 more`,
    );
    expect(many.body.errors).toHaveLength(7);
    const future = await report(writer.key, {
      events: [{ ...ok, occurred_at: new Date(Date.now() + 600_000).toISOString() }],
    });
    expect(future.status).toBe(422);
    const bad = await report(writer.key, { events: [{ ...ok, path: '/both' }] });
    expect(bad.status).toBe(400);
    expect(await usageJobsFor(app.kt.database.db, mine.id)).toBe(0);
  });
});
