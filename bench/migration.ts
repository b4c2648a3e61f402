/**
 * Scenario: the cost of migration 0006 (event identity per org) on a populated events table:
 * back to 0005, N raw events over three monthly partitions, then the timed migration to latest.
 * The migration holds an ACCESS EXCLUSIVE lock on api_key_usage_events while it builds the new
 * primary key, so this is also how long ingest and raw-event reads wait.
 */
import { sql } from 'kysely';
import { createMigrator } from '../src/platform/db.ts';
import { createMonthPartition } from '../src/usage/usage.queries.ts';
import { makeKeys } from './ingest.ts';
import { fmt, kysely, quick, type Section } from './lib.ts';

export async function migrationScenario(url: string): Promise<Section> {
  const rows = quick ? 300_000 : 3_000_000;
  const { orgId, keyIds } = await makeKeys(url, 'bench-migration', 100);
  const db = kysely(url, 2);
  try {
    const migrator = createMigrator(db);
    const back = await migrator.migrateTo('0005_key_expiry_audit');
    if (back.error) throw new Error('migration back to 0005 failed', { cause: back.error });
    const start = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1));
    start.setUTCMonth(start.getUTCMonth() - 2);
    const spanMs = 89 * 86_400_000; // three months of partitions
    for (let m = 0; m < 3; m++) {
      const at = new Date(start);
      at.setUTCMonth(at.getUTCMonth() + m);
      await createMonthPartition(db as never, at.getUTCFullYear(), at.getUTCMonth() + 1);
    }
    await sql`insert into api_key_usage_events
        (event_id, org_id, key_id, occurred_at, method, route, status, latency_ms, ip, user_agent, outcome)
      select gen_random_uuid(), ${orgId}, (${keyIds}::uuid[])[1 + g % ${keyIds.length}],
        ${start}::timestamptz + (g * (${spanMs}::float8 / ${rows}) * interval '1 ms'),
        'GET', '/v1/orders/:id', 200, 3, '10.0.0.1', 'bench', 'success'
      from generate_series(1, ${rows}) as g`.execute(db);
    await sql`checkpoint`.execute(db);
    const t0 = performance.now();
    const up = await migrator.migrateToLatest();
    if (up.error) throw new Error('migration 0006 failed', { cause: up.error });
    const seconds = (performance.now() - t0) / 1000;
    const { rows: size } = await sql<{
      bytes: number;
    }>`select sum(pg_relation_size(i.indexrelid))::int8 as bytes
      from pg_index i join pg_inherits h on h.inhrelid = i.indrelid
      where h.inhparent = 'api_key_usage_events'::regclass and i.indisprimary`.execute(db);
    return {
      title: 'Migration 0006: event identity per org, on a populated table',
      lines: [
        `${fmt(rows)} raw events in three monthly partitions; \`migrateToLatest\` from 0005 (drop the`,
        'old primary key and the org index, build the new primary key per partition, one transaction).',
        '',
        '| rows | migration time | per million rows | new primary key size |',
        '|---|---|---|---|',
        `| ${fmt(rows)} | ${seconds.toFixed(1)} s | ${((seconds / rows) * 1e6).toFixed(1)} s | ${((size[0]?.bytes ?? 0) / 1048576).toFixed(0)} MiB |`,
        '',
        'Ingest and raw-event reads wait for the lock for that long (jobs stay queued, nothing is',
        'lost); rollup reads (org and key usage) and authentication do not touch the table.',
      ],
      verdicts: [],
    };
  } finally {
    await db.destroy();
  }
}
