import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { useTestApp, waitFor } from '../src/testing/harness.ts';
import { createKey, createOrg } from '../src/testing/factories.ts';
import { createMonthPartition } from '../src/usage/usage.queries.ts';
import { startWorker } from './main.ts';

const app = useTestApp();

describe('keytrail worker start-up', () => {
  it('starts ingesting even when its start-up maintenance fails, and logs why', async () => {
    const db = app().kt.database.db;
    // The month after next exists under another name: creating it overlaps, so maintenance fails.
    const ahead = new Date();
    ahead.setUTCDate(1);
    ahead.setUTCMonth(ahead.getUTCMonth() + 2);
    const [year, month] = [ahead.getUTCFullYear(), ahead.getUTCMonth() + 1];
    await createMonthPartition(db, year, month);
    const name = `api_key_usage_events_${year}_${String(month).padStart(2, '0')}`;
    await sql`alter table ${sql.table(name)} rename to api_key_usage_events_renamed`.execute(db);
    const worker = await startWorker(app().kt);
    try {
      const line = app().logs.find((l) => l.includes('start-up maintenance failed'));
      expect(line).toContain('would overlap partition');
      const org = await createOrg(app().client, 'Worker start-up');
      const k = await createKey(app().client, org);
      await app().client.get('/v1/demo/orders/1', { key: k.key });
      await waitFor(
        async () =>
          (await app().client.get(`/api/orgs/${org.orgId}/api-keys/${k.id}`, { key: org.adminKey }))
            .body.request_count === 1,
        { timeoutMs: 10_000 },
      );
    } finally {
      await worker.stop();
    }
  });
});
