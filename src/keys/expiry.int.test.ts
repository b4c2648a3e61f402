import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMaintenance } from '../../workers/maintenance.ts';
import { createOrg } from '../testing/factories.ts';
import { startTestApp, useTestDatabase, type TestApp } from '../testing/harness.ts';
import { createMonthPartition } from '../usage/usage.queries.ts';
import { auditExpiredKeys } from './keys.expiry.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
beforeAll(async () => {
  app = await startTestApp(dbUrl());
});
afterAll(async () => app.close());

/** `n` keys of the org that expired an hour ago, inserted in one statement. */
async function expiredKeys(orgId: string, n: number): Promise<void> {
  await sql`insert into api_keys (id, org_id, name, environment, prefix, key_hash, expires_at)
    select gen_random_uuid(), ${orgId}, 'bulk-' || i, 'live', 'sk_live_exp' || i,
      sha256(convert_to(${orgId} || i, 'UTF8')), now() - interval '1 hour'
    from generate_series(1, ${n}::int) i`.execute(app.kt.database.db);
}

async function auditCounts(orgId: string) {
  const { rows } = await sql<{ entries: number; keys: number }>`
    select count(*)::int as entries, count(distinct target_id)::int as keys from audit_events
    where org_id = ${orgId} and action = 'key.expired'`.execute(app.kt.database.db);
  return rows[0];
}

describe('auditing expired keys', () => {
  it('marks more keys than one batch, once each, even with four markers racing', async () => {
    const org = await createOrg(app.client, 'Bulk expiry');
    await expiredKeys(org.orgId, 2500);
    const db = app.kt.database.db;
    const now = new Date();
    expect(await auditExpiredKeys(db, { now, dryRun: true })).toBe(2500);
    // No prune lock here: the row-level guarantee alone must hold.
    const marked = await Promise.all(
      Array.from({ length: 4 }, () => auditExpiredKeys(db, { now, dryRun: false })),
    );
    expect(marked.reduce((a, b) => a + b, 0)).toBe(2500);
    expect(await auditCounts(org.orgId)).toEqual({ entries: 2500, keys: 2500 });
    expect(await auditExpiredKeys(db, { now: new Date(), dryRun: false })).toBe(0);
  });

  it('runs in the daily maintenance too', async () => {
    const org = await createOrg(app.client, 'Maintained');
    await expiredKeys(org.orgId, 3);
    await createMonthPartition(app.kt.database.db, 2023, 2);
    await runMaintenance(app.kt, { daily: true });
    await runMaintenance(app.kt, { daily: true });
    expect(await auditCounts(org.orgId)).toEqual({ entries: 3, keys: 3 });
    const lines = app.logs
      .filter((l) => l.includes('maintenance: partitions ensured'))
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.dropped, l.expired_keys_marked])).toEqual([
      [['api_key_usage_events_2023_02'], 3],
      [[], 0],
    ]);
  });
});
