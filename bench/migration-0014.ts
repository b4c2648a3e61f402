/**
 * Scenario: the cost of migration 0014 (every key of an org's tables through org_id) on a
 * populated database: back to 0013, keys with hourly, daily and route rollups, webhook
 * messages, deliveries and attempts, then the timed migration to latest. It holds ACCESS
 * EXCLUSIVE locks on api_keys, the rollups, audit_events and the webhook tables while it
 * rebuilds their primary keys and fills org_id, so this is how long a stopped deployment waits.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { createMigrator } from '../src/platform/db.ts';
import { makeKeys } from './ingest.ts';
import { fmt, kysely, quick, type Section } from './lib.ts';

export async function migration0014Scenario(url: string): Promise<Section> {
  const keys = quick ? 1_000 : 10_000;
  const hours = 100;
  const days = 40;
  const deliveries = quick ? 20_000 : 200_000;
  const { orgId, keyIds } = await makeKeys(url, 'bench-migration-0014', keys);
  const db = kysely(url, 2);
  try {
    const back = await createMigrator(db).migrateTo('0013_spiking_keys');
    if (back.error) throw new Error('migration back to 0013 failed', { cause: back.error });
    const ids = sql`unnest(${keyIds}::uuid[]) as k(id)`;
    await sql`insert into api_key_usage_totals (key_id, org_id, request_count)
      select k.id, ${orgId}, 100 from ${ids}`.execute(db);
    await sql`insert into api_key_usage_hourly (key_id, hour, org_id, requests, latency_hist)
      select k.id, date_trunc('hour', now()) - h * interval '1 hour', ${orgId}, 10, '{}'
      from ${ids}, generate_series(1, ${hours}) as h`.execute(db);
    await sql`insert into api_key_usage_daily (key_id, day, org_id, requests, latency_hist)
      select k.id, current_date - d, ${orgId}, 10, '{}'
      from ${ids}, generate_series(1, ${days}) as d`.execute(db);
    await sql`insert into api_key_usage_routes_daily (key_id, day, method, route, org_id, requests)
      select k.id, current_date - d, 'GET', '/v1/orders/:id', ${orgId}, 10
      from ${ids}, generate_series(1, ${days}) as d`.execute(db);
    const endpoint = randomUUID();
    await sql`insert into webhook_endpoints (id, org_id, url, event_types, secret, enabled,
        created_at, updated_at)
      values (${endpoint}, ${orgId}, 'https://hooks.example.com/x', '{key.created}', '\\x01',
        true, now(), now())`.execute(db);
    await sql`with m as (
        insert into webhook_messages (id, org_id, type, occurred_at, payload)
        select gen_random_uuid(), ${orgId}, 'key.created', now(), '{}'::jsonb
        from generate_series(1, ${deliveries}) returning id),
      d as (
        insert into webhook_deliveries (id, message_id, endpoint_id, status, created_at)
        select gen_random_uuid(), m.id, ${endpoint}, 'succeeded', now() from m returning id)
      insert into webhook_attempts (delivery_id, attempted_at, latency_ms)
      select d.id, now(), 3 from d, generate_series(1, 2)`.execute(db);
    await sql`checkpoint`.execute(db);
    const rollupRows = keys * (1 + hours + 2 * days);
    const t0 = performance.now();
    const up = await createMigrator(db).migrateToLatest();
    if (up.error) throw new Error('migration 0014 failed', { cause: up.error });
    const seconds = (performance.now() - t0) / 1000;
    return {
      title: 'Migration 0014: keys through org_id, on a populated database',
      lines: [
        `${fmt(keys)} keys with ${fmt(rollupRows)} rollup rows (totals, ${hours} hours, ${days} days of`,
        `daily and route rows each), ${fmt(deliveries)} webhook deliveries with ${fmt(2 * deliveries)}`,
        'attempts; `migrateToLatest` from 0013 (one transaction).',
        '',
        '| rollup rows | deliveries + attempts | migration time |',
        '|---|---|---|',
        `| ${fmt(rollupRows)} | ${fmt(3 * deliveries)} | ${seconds.toFixed(1)} s |`,
        '',
        'Authentication misses, ingest, key changes and webhook deliveries wait for its locks that',
        'long: stop every instance, migrate, then start the new version (docs/operations.md).',
      ],
      verdicts: [],
    };
  } finally {
    await db.destroy();
  }
}
