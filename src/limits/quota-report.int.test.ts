/**
 * An instance's report of its unspent credit applies to the lease it was computed for only: not
 * to one made again after a PATCH of the quota deleted it (its `seq` starts over at 1).
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createOrg } from '../testing/factories.ts';
import { useTestApp } from '../testing/harness.ts';
import { reportQuota, takeQuota } from './quota.queries.ts';

const app = useTestApp();
const INSTANCE = '00000000-0000-4000-8000-000000000001';

describe('quota reports', () => {
  it('never apply to a lease made again after a PATCH, even with the same seq', async () => {
    const { client, kt } = app();
    const db = kt.database.db;
    const org = await createOrg(client, 'Reports');
    const created = await client.post(`/api/orgs/${org.orgId}/api-keys`, {
      key: org.adminKey,
      body: { name: 'metered', quota: { limit: 100 } },
    });
    const subject = created.body.api_key.id as string;
    const [first] = await takeQuota(db, INSTANCE, [{ subject, want: 5 }]);
    expect(first).toMatchObject({ got: 5, seq: 1 });
    // A PATCH leaving less than the instance holds: its lease is voided (a new generation).
    const patched = await client.patch(`/api/orgs/${org.orgId}/api-keys/${subject}`, {
      key: org.adminKey,
      body: { quota: { limit: 100, remaining: 3 } },
    });
    expect(patched.status, patched.text).toBe(200);
    const [second] = await takeQuota(db, INSTANCE, [{ subject, want: 5 }]);
    // A lease made again: its seq starts over.
    expect(second).toMatchObject({ got: 3, seq: 1 });
    expect(second?.generation).not.toBe(first?.generation);
    const held = async () =>
      (
        await sql<{ held: number }>`select held::int from key_quota_leases
          where subject = ${subject} and instance_id = ${INSTANCE}`.execute(db)
      ).rows[0]?.held;
    // A late report of the old lease (all of its 5 spent): same seq, older generation.
    const old = {
      subject,
      unspent: 0,
      seq: 1,
      generation: first?.generation ?? 0,
      periodStart: first?.periodStart ?? null,
    };
    expect(await reportQuota(db, INSTANCE, [old])).toEqual([]);
    expect(await held()).toBe(3);
    // The new lease's own report applies.
    const own = { ...old, generation: second?.generation ?? 0, unspent: 1 };
    expect(await reportQuota(db, INSTANCE, [own])).toEqual([subject]);
    expect(await held()).toBe(1);
  });
});
