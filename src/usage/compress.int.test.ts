/**
 * Columnar history (SPEC §12): closed months rebuilt in columnar storage and swapped in, with
 * every read and write of a month working the same across row and columnar partitions. On the
 * Citus cluster (`make test-citus`) this is Citus's columnar; on plain PostgreSQL a stand-in
 * access method named `columnar` (PostgreSQL's heap under another name) runs the same code.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cliEnv, runInProcess } from '../testing/cli.ts';
import { withDatabase } from '../testing/databases.ts';
import {
  createKey,
  createOrg,
  usageEvent,
  type TestKey,
  type TestOrg,
} from '../testing/factories.ts';
import { startTestApp, useTestDatabase, type TestApp } from '../testing/harness.ts';
import {
  buildColumnarCopy,
  closePartition,
  columnarAvailable,
  copyLateRows,
  partitionBound,
  swapIn,
} from './compress.queries.ts';
import { onCitus } from '../platform/db.ts';
import { compressPartitions } from './usage.compress.ts';
import { createIngester } from './usage.ingest.ts';
import { partitionName, partitionStats } from './usage.queries.ts';
import { rebuildRollups } from './usage.rebuild.ts';
import { prune } from './usage.prune.ts';
import { runMaintenance } from '../../workers/maintenance.ts';
import type { UsageEvent } from './usage.types.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let org: TestOrg;

// Months counted from this test's "now": the 4th of the current month, so last month ended
// 3 days ago (open: within the 7-day report window) and the ones before are closed.
const base = new Date();
const monthStart = (back: number) =>
  new Date(Date.UTC(base.getUTCFullYear(), base.getUTCMonth() - back, 1));
const now = new Date(monthStart(0).getTime() + 3 * 86_400_000);
const nameOf = (back: number) => {
  const d = monthStart(back);
  return partitionName(d.getUTCFullYear(), d.getUTCMonth() + 1);
};

beforeAll(async () => {
  // Nothing pruned by the daily maintenance here: months of the last half year stay.
  app = await startTestApp(dbUrl(), { config: { retentionDays: 3650 } });
  const db = app.kt.database.db;
  if (!(await columnarAvailable(db))) {
    await sql`create access method columnar type table handler heap_tableam_handler`.execute(db);
  }
  org = await createOrg(app.client, 'Columnar');
});
afterAll(async () => app.close());

function events(key: TestKey, back: number, count: number, offsetMs = 0): UsageEvent[] {
  const start = monthStart(back).getTime() + 86_400_000 + offsetMs;
  return Array.from({ length: count }, (_, i) => ({
    ...usageEvent({ orgId: org.orgId, keyId: key.id, occurredAt: start + i * 60_000 }, i),
    eventId: uuidv7(),
    status: i % 10 === 0 ? 500 : 200,
    ip: `10.2.0.${i % 250}`,
    userAgent: 'Mozilla/5.0 (compress test)',
  }));
}

/** A compress run (lock waits of 100 ms, 2 tries) while another session holds `statement`'s locks. */
async function whileHolding(statement: string) {
  const holder = new pg.Client({ connectionString: dbUrl() });
  await holder.connect();
  try {
    await holder.query('begin');
    await holder.query(statement);
    return await compressPartitions(app.kt.backgroundDatabase.db, {
      now,
      dryRun: false,
      swapLockTimeoutMs: 100,
      swapAttempts: 2,
    });
  } finally {
    await holder.query('rollback');
    await holder.end();
  }
}

const storage = async () =>
  new Map((await partitionStats(app.kt.database.db)).map((p) => [p.name, p.storage]));

const requests = async (keyId: string) =>
  (
    await app.kt.database.db
      .selectFrom('api_key_usage_totals')
      .select('request_count')
      .where('org_id', '=', org.orgId)
      .where('key_id', '=', keyId)
      .executeTakeFirst()
  )?.request_count ?? 0;

/** Every raw event of a key, through the API's pages (oldest month included). */
async function rawEventIds(key: TestKey): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const params = new URLSearchParams({
      key_id: key.id,
      from: monthStart(8).toISOString(),
      limit: '70',
    });
    if (cursor) params.set('cursor', cursor);
    const res = await app.client.get(`/api/orgs/${org.orgId}/usage-events?${params.toString()}`, {
      key: org.adminKey,
    });
    expect(res.status).toBe(200);
    ids.push(...(res.body.data as { event_id: string }[]).map((e) => e.event_id));
    cursor = res.body.next_cursor as string | null;
  } while (cursor);
  return ids;
}

describe('partitions compress', () => {
  it('compresses closed months only; raw-event pages, exports, replays and rollups rebuild work across both storages', async () => {
    const key = await createKey(app.client, org);
    const ingester = createIngester(app.kt.database);
    const old = events(key, 2, 100);
    const recent = events(key, 1, 50);
    await ingester.ingest(old);
    await ingester.ingest(recent);

    const dry = await compressPartitions(app.kt.backgroundDatabase.db, { now, dryRun: true });
    const planned = dry.partitions.map((p) => p.name);
    expect(planned).toContain(nameOf(2));
    expect(planned).not.toContain(nameOf(1));
    expect((await storage()).get(nameOf(2))).toBe('row');

    const report = await compressPartitions(app.kt.backgroundDatabase.db, { now, dryRun: false });
    expect(report.failed).toEqual([]);
    const done = report.partitions.find((p) => p.name === nameOf(2));
    expect(done?.bytesAfter).toBeGreaterThan(0);
    const after = await storage();
    expect(after.get(nameOf(2))).toBe('columnar');
    expect(after.get(nameOf(1))).toBe('row');
    // The same indexes as a row month's, under the same names.
    const { rows: indexes } = await sql<{ name: string; def: string }>`
      select indexname as name, indexdef as def from pg_indexes
      where tablename in (${nameOf(2)}, ${nameOf(1)}) order by indexname`.execute(
      app.kt.database.db,
    );
    const shape = (n: string) =>
      indexes
        .filter((i) => i.name.startsWith(n))
        .map((i) => i.def.replaceAll(n, 'P'))
        .sort();
    expect(shape(nameOf(2))).toEqual(shape(nameOf(1)));
    expect(shape(nameOf(2))).toHaveLength(2);

    // Reads: the key's raw-event pages run oldest first through both months.
    const expected = [...old, ...recent].sort((a, b) => a.occurredAt - b.occurredAt);
    expect(await rawEventIds(key)).toEqual(expected.map((e) => e.eventId));
    // A CSV export of the closed month alone.
    const csv = await app.client.get(
      `/api/orgs/${org.orgId}/usage-events?${new URLSearchParams({
        key_id: key.id,
        from: monthStart(2).toISOString(),
        to: monthStart(1).toISOString(),
        format: 'csv',
      }).toString()}`,
      { key: org.adminKey },
    );
    expect(csv.status).toBe(200);
    expect(csv.text.trim().split('\n')).toHaveLength(1 + old.length);

    // Replays into the columnar month: stored events are skipped, new ones stored, once.
    expect(await requests(key.id)).toBe(150);
    const more = events(key, 2, 10, 86_400_000);
    await ingester.ingest([...old.slice(0, 30), ...more, more[0] as UsageEvent]);
    await ingester.ingest(old);
    expect(await requests(key.id)).toBe(160);
    expect(await rawEventIds(key)).toHaveLength(160);

    // Rollups rebuilt from the raw events of both months: the same counts.
    const day = (d: Date) => d.toISOString().slice(0, 10);
    await rebuildRollups(app.kt.database.db, day(monthStart(2)), day(now));
    const { rows: daily } = await sql<{ n: number }>`select sum(requests)::int as n
      from api_key_usage_daily where org_id = ${org.orgId} and key_id = ${key.id}`.execute(
      app.kt.database.db,
    );
    expect(daily[0]?.n).toBe(160);

    // A second run finds nothing left to compress.
    const again = await compressPartitions(app.kt.backgroundDatabase.db, { now, dryRun: true });
    expect(again.partitions.map((p) => p.name)).not.toContain(nameOf(2));
  });

  it("shows a key's latest events across the last days and older, columnar, months", async () => {
    const key = await createKey(app.client, org);
    const ingester = createIngester(app.kt.database);
    const old = events(key, 2, 30, 3 * 86_400_000);
    const fresh = events(key, 0, 5).map((e, i) => ({
      ...e,
      occurredAt: Date.now() - (i + 1) * 60_000,
    }));
    await ingester.ingest([...old, ...fresh]);
    expect((await storage()).get(nameOf(2))).toBe('columnar');
    const latest = async () => {
      const res = await app.client.get(
        `/api/orgs/${org.orgId}/api-keys/${key.id}/usage?from=${monthStart(3).toISOString()}`,
        { key: org.adminKey },
      );
      expect(res.status).toBe(200);
      return (res.body.recent_events as { event_id: string }[]).map((e) => e.event_id);
    };
    const newestFirst = (list: UsageEvent[]) =>
      [...list].sort((a, b) => b.occurredAt - a.occurredAt).map((e) => e.eventId);
    // 5 from the last days, then the 15 newest of the columnar month.
    expect(await latest()).toEqual([...newestFirst(fresh), ...newestFirst(old).slice(0, 15)]);
  });

  it('refuses new rows of a month while it is copied; its job is retried and stored once after', async () => {
    const key = await createKey(app.client, org);
    const ingester = createIngester(app.kt.database);
    const batch = events(key, 3, 20);
    await ingester.ingest(batch.slice(0, 10));
    await closePartition(app.kt.database.db, nameOf(3));
    await expect(ingester.ingest(batch)).rejects.toThrow();
    expect(await requests(key.id)).toBe(10);
    const report = await compressPartitions(app.kt.backgroundDatabase.db, { now, dryRun: false });
    expect(report.partitions.map((p) => p.name)).toContain(nameOf(3));
    await ingester.ingest(batch);
    expect(await requests(key.id)).toBe(20);
  });

  it('copies the rows stored while the copy was built before it swaps (late rows)', async () => {
    const db = app.kt.backgroundDatabase.db;
    const key = await createKey(app.client, org);
    const ingester = createIngester(app.kt.database);
    await ingester.ingest(events(key, 7, 10));
    const month = (await partitionStats(db)).find((p) => p.name === nameOf(7));
    if (!month?.from || !month.to) throw new Error('no month');
    const range = { from: month.from, to: month.to };
    await buildColumnarCopy(db, nameOf(7), range, await onCitus(db));
    await ingester.ingest(events(key, 7, 5, 86_400_000));
    await closePartition(db, nameOf(7));
    expect(await copyLateRows(db, nameOf(7))).toBe(5);
    await swapIn(db, nameOf(7), (await partitionBound(db, nameOf(7))) ?? '', 5_000);
    expect((await storage()).get(nameOf(7))).toBe('columnar');
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(nameOf(7))}
      where key_id = ${key.id}`.execute(db);
    expect(rows[0]?.n).toBe(15);
    expect(await requests(key.id)).toBe(15);
  });

  it('leaves a month it cannot swap in row storage, open, with no copy behind', async () => {
    const key = await createKey(app.client, org);
    const ingester = createIngester(app.kt.database);
    await ingester.ingest(events(key, 4, 10));
    // A lock on the events table itself (not its months): the copy is built, and the swap's
    // DETACH waits for it past its lock timeout, twice.
    const swap = await whileHolding('lock table only api_key_usage_events in access share mode');
    expect(swap.failed.map((f) => f.name)).toContain(nameOf(4));
    expect(swap.failed[0]?.error).toMatch(/lock/i);
    expect((await storage()).get(nameOf(4))).toBe('row');
    const { rows } = await sql<{ n: number }>`select
      (select count(*) from pg_class where relname = ${`${nameOf(4)}_c`})::int
      + (select count(*) from pg_constraint where conname = ${`${nameOf(4)}_closed`})::int as n`.execute(
      app.kt.database.db,
    );
    expect(rows[0]?.n).toBe(0);
    // Open: its month takes new events again.
    await ingester.ingest(events(key, 4, 5, 86_400_000));
    expect(await requests(key.id)).toBe(15);
    // A long read of the month itself (an export): closing it waits past its timeout, twice.
    const close = await whileHolding(`select count(*) from ${nameOf(4)}`);
    expect(close.failed.map((f) => f.name)).toContain(nameOf(4));
    const after = (await partitionStats(app.kt.database.db)).find((p) => p.name === nameOf(4));
    expect(after).toMatchObject({ storage: 'row', closed: false });
  });

  it('is run by the daily maintenance, not the one at start-up', async () => {
    const key = await createKey(app.client, org);
    await createIngester(app.kt.database).ingest(events(key, 6, 10));
    expect((await storage()).get(nameOf(6))).toBe('row');
    await runMaintenance(app.kt, { daily: false });
    expect((await storage()).get(nameOf(6))).toBe('row');
    await runMaintenance(app.kt, { daily: true });
    expect((await storage()).get(nameOf(6))).toBe('columnar');
    expect((await storage()).get(nameOf(0))).toBe('row');
  });

  it('stores concurrent replays into a columnar month once: a racing insert fails and is retried', async () => {
    const key = await createKey(app.client, org);
    const batch = events(key, 6, 40, 2 * 86_400_000);
    const [a, b] = [createIngester(app.kt.database), createIngester(app.kt.database)];
    const jobs = [batch.slice(0, 30), batch.slice(10), batch.slice(5, 35), batch];
    // Each job as pg-boss runs it: a failed attempt is tried again, until it succeeds.
    await Promise.all(
      jobs.map(async (job, i) => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await (i % 2 ? a : b).ingest(job);
          } catch (error) {
            if (attempt >= 5) throw error;
          }
        }
      }),
    );
    expect(await requests(key.id)).toBe(40);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from api_key_usage_events
      where org_id = ${org.orgId} and key_id = ${key.id}`.execute(app.kt.database.db);
    expect(rows[0]?.n).toBe(40);
  });

  it('undoes what a run stopped half-way left: a copy is dropped, a closed month opened', async () => {
    const db = app.kt.database.db;
    // As a crash would leave them: a copy of a month, and the current month closed.
    await sql`create table ${sql.table(`${nameOf(0)}_c`)} (like api_key_usage_events)`.execute(db);
    await closePartition(db, nameOf(0));
    const listed = await runInProcess(['partitions', 'list'], cliEnv(dbUrl()));
    expect(listed.stdout).toContain(`${nameOf(0)} (closed to new rows)`);
    const key = await createKey(app.client, org);
    await expect(createIngester(app.kt.database).ingest(events(key, 0, 1))).rejects.toThrow(
      /_closed/,
    );
    await compressPartitions(app.kt.backgroundDatabase.db, { now, dryRun: false });
    const after = (await partitionStats(db)).find((p) => p.name === nameOf(0));
    expect(after).toMatchObject({ storage: 'row', closed: false });
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_class
      where relname = ${`${nameOf(0)}_c`}`.execute(db);
    expect(rows[0]?.n).toBe(0);
    await createIngester(app.kt.database).ingest(events(key, 0, 1));
    expect(await requests(key.id)).toBe(1);
  });

  it('prints what it would do (text and JSON) and lists storage; exits 1 without columnar storage', async () => {
    const env = cliEnv(dbUrl());
    const dry = await runInProcess(['partitions', 'compress', '--dry-run', '--json'], env);
    expect(dry.code).toBe(0);
    const json = JSON.parse(dry.stdout) as { dry_run: boolean; partitions: unknown[] };
    expect(json).toMatchObject({ dry_run: true, skipped: false, failed: [] });
    const text = await runInProcess(['partitions', 'compress', '--dry-run'], env);
    expect(text.stdout).toMatch(/would compress|nothing to compress/);
    const list = await runInProcess(['partitions', 'list'], env);
    expect(list.stdout).toContain('STORAGE');
    expect(list.stdout).toMatch(/ columnar\n| row\n/);
    // A database without Citus's columnar access method.
    const scratch = `keytrail_nocol_${randomBytes(4).toString('hex')}`;
    await withDatabase(inject('serverUrl'), scratch, async (url) => {
      const res = await runInProcess(['partitions', 'compress'], cliEnv(url));
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('columnar storage needs Citus');
    });
  });
  it('lets prune drop columnar months like row ones', async () => {
    const key = await createKey(app.client, org);
    const ingester = createIngester(app.kt.database);
    await ingester.ingest(events(key, 5, 10));
    const recent = events(key, 1, 10);
    await ingester.ingest(recent);
    await compressPartitions(app.kt.backgroundDatabase.db, { now, dryRun: false });
    expect((await storage()).get(nameOf(5))).toBe('columnar');
    const pruned = await prune(app.kt.backgroundDatabase.db, {
      now,
      retentionDays: Math.ceil((now.getTime() - monthStart(1).getTime()) / 86_400_000),
      hourlyRetentionDays: 10_000,
      rollupRetentionDays: 10_000,
      dryRun: false,
    });
    expect(pruned.partitions.map((p) => p.name)).toContain(nameOf(5));
    expect((await storage()).has(nameOf(5))).toBe(false);
    expect(await rawEventIds(key)).toEqual(recent.map((e) => e.eventId));
  });
});
