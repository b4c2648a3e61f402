import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, useTestDatabase, type TestApp } from '../testing/harness.ts';
import { createKey, createOrg, usageEvent } from '../testing/factories.ts';
import { createIngester } from './usage.ingest.ts';
import { listPartitions, PRUNE_LOCK } from './usage.queries.ts';
import { prune } from './usage.prune.ts';
import { ensurePartitionsAhead } from './usage.partitions.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
beforeAll(async () => {
  app = await startTestApp(dbUrl());
  await ensurePartitionsAhead(app.kt.database.db, new Date(), 2);
});
afterAll(async () => app.close());

describe('prune', () => {
  it('drops partitions past retention, old rollups, audits it, keeps totals; dry-run changes nothing', async () => {
    const org = await createOrg(app.client, 'Prune');
    const k = await createKey(app.client, org);
    const old = Date.UTC(2024, 0, 15);
    const ingester = createIngester(app.kt.database);
    const oldEvents = (offset: number) =>
      Array.from({ length: 20 }, (_, i) =>
        usageEvent({ orgId: org.orgId, keyId: k.id, occurredAt: old + i }, i + offset),
      );
    await ingester.ingest(oldEvents(0));
    const names = async () => (await listPartitions(app.kt.database.db)).map((p) => p.name);
    expect(await names()).toContain('api_key_usage_events_2024_01');
    const options = {
      now: new Date(),
      retentionDays: 90,
      hourlyRetentionDays: 35,
      rollupRetentionDays: 400,
    };
    const dry = await prune(app.kt.database.db, { ...options, dryRun: true });
    expect(dry.partitions.map((p) => p.name)).toContain('api_key_usage_events_2024_01');
    expect(await names()).toContain('api_key_usage_events_2024_01');
    const report = await prune(app.kt.database.db, { ...options, dryRun: false });
    expect(report.partitions.map((p) => p.name)).toEqual(['api_key_usage_events_2024_01']);
    expect(report.hourlyRowsDeleted).toBe(1);
    expect(report.dailyRowsDeleted).toBe(1);
    const current = new Date().toISOString().slice(0, 7).replace('-', '_');
    expect(await names()).toContain(`api_key_usage_events_${current}`);
    expect(await names()).not.toContain('api_key_usage_events_2024_01');
    const totals = await app.kt.database.db
      .selectFrom('api_key_usage_totals')
      .select('request_count')
      .where('key_id', '=', k.id)
      .executeTakeFirstOrThrow();
    expect(totals.request_count).toBe(20);
    const { rows } = await sql<{ details: { partition: string } }>`select details from audit_events
      where org_id = ${org.orgId} and action = 'partition.pruned'`.execute(app.kt.database.db);
    expect(rows.map((r) => r.details.partition)).toEqual(['api_key_usage_events_2024_01']);
    // The watermark records the drop; the ingester had seen that month, notices the partition
    // is gone, and drops a replay of its events instead of recreating it (counting them again).
    const mark = await sql<{ pruned_before: Date }>`select pruned_before
      from usage_prune_watermark`.execute(app.kt.database.db);
    expect(mark.rows[0]?.pruned_before.toISOString()).toBe('2024-02-01T00:00:00.000Z');
    expect(await ingester.ingest(oldEvents(100))).toEqual({
      received: 20,
      inserted: 0,
      expired: 20,
    });
    expect(await names()).not.toContain('api_key_usage_events_2024_01');
    expect(totals.request_count).toBe(20);
  });

  it('drops a month table a failed prune left detached, and runs one prune at a time', async () => {
    const db = app.kt.database.db;
    const name = 'api_key_usage_events_2023_03';
    await sql`create table ${sql.table(name)} (like api_key_usage_events)`.execute(db);
    const options = {
      now: new Date(),
      retentionDays: 90,
      hourlyRetentionDays: 35,
      rollupRetentionDays: 400,
      dryRun: false,
    };
    // While another session holds the prune lock, a prune does nothing and says so.
    const holder = new pg.Client({ connectionString: dbUrl() });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock($1::int8)', [PRUNE_LOCK.toString()]);
      const skipped = await prune(db, options);
      expect(skipped).toMatchObject({ skipped: true, partitions: [] });
    } finally {
      await holder.end();
    }
    const report = await prune(db, options);
    expect(report.skipped).toBe(false);
    expect(report.partitions.map((p) => p.name)).toContain(name);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_class
      where relname = ${name}`.execute(db);
    expect(rows[0]?.n).toBe(0);
  });
});
