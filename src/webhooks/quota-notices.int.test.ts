/**
 * The ingest's quota notices lock the quota rows they may mark in one ordered pass: a take that
 * holds a lower subject and then wants a higher one never deadlocks with an ingest that marks
 * the higher one low and the lower one exhausted.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createOrg } from '../testing/factories.ts';
import { useTestApp, waitFor } from '../testing/harness.ts';
import { markQuotaNotices } from './hygiene.queries.ts';

const app = useTestApp();

describe('quota notices in the ingest', () => {
  it('lock both kinds in subject order: a take holding the lower subject gets the higher one', async () => {
    const { client, kt } = app();
    const org = await createOrg(client, 'Quota locks');
    const make = async (name: string) =>
      (
        await client.post(`/api/orgs/${org.orgId}/api-keys`, {
          key: org.adminKey,
          body: { name, quota: { limit: 100 } },
        })
      ).body.api_key.id as string;
    // A key's quota is its own (subject = key id): the lower id is exhausted, the higher low.
    const [lower, higher] = [await make('one'), await make('two')].sort() as [string, string];
    const url = kt.config.databaseUrl;
    const setup = new pg.Client({ connectionString: url });
    const take = new pg.Client({ connectionString: url });
    const ingest = new pg.Client({ connectionString: url });
    await Promise.all([setup.connect(), take.connect(), ingest.connect()]);
    try {
      await setup.query('update key_quotas set pool = 0 where subject = $1', [lower]);
      await setup.query('update key_quotas set pool = 5 where subject = $1', [higher]);
      // A take holds the lower subject...
      await take.query('begin');
      await take.query('select 1 from key_quotas where subject = $1 for update', [lower]);
      // ...while the ingest marks the higher one low and the lower one exhausted.
      const own = (id: string) => ({ key_id: id, subject: id });
      const { sql, parameters } = markQuotaNotices({
        low: [own(higher)],
        exhausted: [own(lower)],
      }).compile(kt.database.db);
      await ingest.query('begin');
      const ingestPid = (await ingest.query<{ pid: number }>('select pg_backend_pid() as pid'))
        .rows[0]?.pid;
      const marking = ingest.query(sql, parameters as unknown[]);
      marking.catch(() => undefined); // awaited below; a failure above must not leave it unhandled
      // The ingest's statement waits for the take's lock.
      await waitFor(async () => {
        const { rows } = await setup.query<{ waiting: boolean }>(
          `select wait_event_type = 'Lock' as waiting from pg_stat_activity where pid = $1`,
          [ingestPid],
        );
        return rows[0]?.waiting === true;
      });
      // The take now wants the higher subject: the ingest must not be holding it. And it gives
      // the lower quota credit back before it commits.
      await take.query("set lock_timeout = '5s'");
      await take.query('select 1 from key_quotas where subject = $1 for update', [higher]);
      await take.query('update key_quotas set pool = 3 where subject = $1', [lower]);
      await take.query('commit');
      const { rows } = await marking;
      await ingest.query('commit');
      // Judged again on the row the take left: the lower quota is no longer exhausted.
      expect(rows.map((r: { kind: string; id: string }) => [r.kind, r.id])).toEqual([
        ['key.quota_low', higher],
      ]);
      // Noticed once per period: nothing is due any more.
      await setup.query('update key_quotas set pool = 0 where subject = $1', [lower]);
      const again = markQuotaNotices({
        low: [own(higher)],
        exhausted: [own(lower), own(higher)],
      }).compile(kt.database.db);
      const { rows: second } = await setup.query(again.sql, again.parameters as unknown[]);
      expect(second.map((r: { kind: string; id: string }) => [r.kind, r.id])).toEqual([
        ['key.quota_exhausted', lower],
      ]);
      const third = await setup.query(again.sql, again.parameters as unknown[]);
      expect(third.rows).toEqual([]);
    } finally {
      // A failure above may leave the marking statement running: it ends with its client.
      await Promise.all([setup.end(), take.end(), ingest.end()]);
    }
  });
});
