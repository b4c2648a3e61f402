/**
 * Prune after a `DETACH … CONCURRENTLY` that was interrupted between its two transactions (on
 * plain PostgreSQL; Citus 12.1 has no concurrent detach, and prune detaches plainly there).
 */
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { createMonthPartition, listPartitions } from './usage.queries.ts';
import { prune } from './usage.prune.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
beforeAll(async () => {
  app = await startTestApp(dbUrl());
});
afterAll(async () => app.close());

describe('prune', () => {
  it('finishes a concurrent detach that was interrupted, instead of failing on it', async () => {
    const db = app.kt.database.db;
    await createMonthPartition(db, 2023, 6);
    const name = 'api_key_usage_events_2023_06';
    // A snapshot older than the detach makes its second transaction wait; cancelling it then
    // leaves the partition "detach pending", as a killed prune would.
    const holder = new pg.Client({ connectionString: dbUrl() });
    const detacher = new pg.Client({ connectionString: dbUrl() });
    await holder.connect();
    await detacher.connect();
    try {
      await holder.query('begin isolation level repeatable read');
      await holder.query('select count(*) from api_key_usage_events');
      const pid = (await detacher.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]
        ?.pid;
      const detach = detacher
        .query(`alter table api_key_usage_events detach partition ${name} concurrently`)
        .then(
          () => 'finished',
          (error: unknown) => String(error),
        );
      await waitFor(async () => {
        const { rows } = await sql<{ waiting: boolean }>`select wait_event is not null as waiting
          from pg_stat_activity where pid = ${pid} and state = 'active'`.execute(db);
        return rows[0]?.waiting === true;
      });
      await sql`select pg_cancel_backend(${pid})`.execute(db);
      expect(await detach).toMatch(/cancel/i);
      await holder.query('commit');
    } finally {
      await holder.end();
      await detacher.end();
    }
    const pending = (await listPartitions(db)).find((p) => p.name === name);
    expect(pending?.detachPending).toBe(true);
    const report = await prune(db, {
      now: new Date(),
      retentionDays: 90,
      hourlyRetentionDays: 35,
      rollupRetentionDays: 400,
      dryRun: false,
    });
    expect(report.partitions.map((p) => p.name)).toContain(name);
    expect((await listPartitions(db)).map((p) => p.name)).not.toContain(name);
  });
});
