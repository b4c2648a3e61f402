/**
 * Issue 18: one org's usage backlog, dead-lettered events or failure holds back no other org, and
 * the daily run never waits behind ingest. The policy's lock-out guards and authority:
 * dormant-safety.int.test.ts.
 */
import { sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { impatientPolicies, useTrackingApp } from '../../test/admin-app.ts';
import { dormantFixtures, REVOKE } from '../../test/dormant-fixtures.ts';
import { createKey, createOrg, usageEvent, type TestOrg } from '../testing/factories.ts';
import { waitFor } from '../testing/harness.ts';
import { packEvents, USAGE_DEAD_LETTER_QUEUE, USAGE_INGEST_QUEUE } from '../usage/usage.jobs.ts';
import { whenUsageComplete } from './usage-freshness.ts';

const tracked = useTrackingApp();
const fixtures = dormantFixtures(tracked);
const { db, ageOrg, usedLongAgo, use, statusOf } = fixtures;
const { audits, setPolicy, preview, actAsOperator } = fixtures;

/**
 * Whether `org`'s usage up to its admin key's request at `since` is ingested: that use is in the
 * totals (so every earlier event of the org was flushed, in order) and no queued job carries
 * any of the org's events.
 */
async function usageIngested(org: TestOrg, since: number): Promise<boolean> {
  const { rows } = await sql<{ used: boolean; pending: boolean }>`
    select coalesce((select last_used_at >= ${new Date(since)} from api_key_usage_totals
        where key_id = ${org.adminKeyId}), false) as used,
      exists (select 1 from pgboss.job where name = ${USAGE_INGEST_QUEUE}
        and state in ('created', 'retry', 'active') and data->'orgs' ? ${org.orgId}) as pending
  `.execute(db());
  return rows[0]?.used === true && rows[0].pending === false;
}

describe('usage freshness per org', () => {
  /** A use of `keyId` now, with an id of its own. */
  const event = (orgId: string, keyId: string) => ({
    ...usageEvent({ orgId, keyId, occurredAt: Date.now() }, 0),
    eventId: crypto.randomUUID(),
  });

  it('runs an org without pending usage while another org’s backlog waits', async () => {
    const quiet = await createOrg(tracked.app.client, 'Quiet');
    const busy = await createOrg(tracked.app.client, 'Busy');
    const flood = await createOrg(tracked.app.client, 'Flood');
    const quietIdle = await createKey(tracked.app.client, quiet, { name: 'idle' });
    const busyIdle = await createKey(tracked.app.client, busy, { name: 'idle' });
    for (const org of [quiet, busy, flood]) {
      await ageOrg(org, 10);
      await use(org.adminKey, org.adminKeyId);
    }
    const saved = Date.now();
    await setPolicy(quiet, REVOKE);
    await setPolicy(busy, REVOKE);
    // The run gives up on a backlog fast (impatientPolicies): quiet's own usage, its policy save
    // included, is ingested first, however loaded the machine.
    await waitFor(() => usageIngested(quiet, saved));
    // Queued and not ingested (they may start only in an hour): another tenant's flood, and a
    // use of busy's idle key that the run must not overlook.
    const boss = await tracked.app.kt.queue();
    const jobs: (string | null)[] = [];
    for (let i = 0; i < 5; i++) {
      const events = Array.from({ length: 20 }, () => event(flood.orgId, flood.adminKeyId));
      jobs.push(
        await boss.send(USAGE_INGEST_QUEUE, await packEvents(events), { startAfter: 3600 }),
      );
    }
    const busyUse = await packEvents([event(busy.orgId, busyIdle.id)]);
    jobs.push(await boss.send(USAGE_INGEST_QUEUE, busyUse, { startAfter: 3600 }));
    const policies = impatientPolicies(tracked.app.kt);
    try {
      const report = await policies.runAll();
      expect(report.skipped).toBeGreaterThan(0);
      expect(await statusOf(quietIdle.id)).toBe('revoked');
      expect(await statusOf(busyIdle.id)).toBe('active');
      expect(await audits(busy, 'key.revoked')).toEqual([]);
      // The skip is on the policy, with its reason: the Policies page says the run did nothing.
      const { rows } = await sql<{ last_run: { skipped: string | null; acted: number } }>`
        select last_run from dormant_key_policies where org_id = ${busy.orgId}`.execute(db());
      expect(rows[0]?.last_run).toMatchObject({ acted: 0, skipped: expect.any(String) });
    } finally {
      await sql`delete from pgboss.job where id = any(${jobs}::uuid[])`.execute(db());
    }
  });

  it('does not count an org fresh when its job fails for good while the run waits', async () => {
    const [held, other] = [crypto.randomUUID(), crypto.randomUUID()];
    const boss = await tracked.app.kt.queue();
    const data = await packEvents([event(held, crypto.randomUUID())]);
    const job = await boss.send(USAGE_INGEST_QUEUE, data, { startAfter: 3600 });
    const fresh: string[] = [];
    const deps = { db: db(), flushIntervalMs: 0, timeoutMs: 60_000 };
    const done = whenUsageComplete(deps, [held, other], (orgId) => {
      fresh.push(orgId);
      return Promise.resolve();
    });
    try {
      // `other` is run once the run has read the jobs queued before it; then the job dies.
      await waitFor(() => fresh.includes(other));
      await sql`update pgboss.job set state = 'failed' where id = ${job}`.execute(db());
      const { skipped } = await done;
      expect(fresh).toEqual([other]);
      expect(skipped).toEqual([{ orgId: held, reason: expect.stringContaining('dead-lettered') }]);
    } finally {
      await sql`delete from pgboss.job where id = ${job}`.execute(db());
    }
  });

  it('does not revoke for an org whose events wait in a dead-lettered job', async () => {
    const org = await createOrg(tracked.app.client, 'Dead-lettered use');
    const idle = await createKey(tracked.app.client, org, { name: 'idle' });
    await ageOrg(org, 10);
    await use(org.adminKey, org.adminKeyId);
    await setPolicy(org, REVOKE);
    const boss = await tracked.app.kt.queue();
    const dead = await packEvents([event(org.orgId, idle.id)]);
    const job = await boss.send(USAGE_DEAD_LETTER_QUEUE, dead);
    try {
      const report = await tracked.app.kt.dormantPolicies.runAll();
      expect(report.skipped).toBeGreaterThan(0);
      expect(await statusOf(idle.id)).toBe('active');
      expect((await preview(org)).keys.map((k: { key_id: string }) => k.key_id)).toEqual([idle.id]);
    } finally {
      await sql`delete from pgboss.job where id = ${job}`.execute(db());
    }
    await tracked.app.kt.dormantPolicies.runAll();
    expect(await statusOf(idle.id)).toBe('revoked');
  });
});

describe('the daily run', () => {
  it('does not wait behind ingest’s foreign-key locks on the keys', async () => {
    const org = await createOrg(tracked.app.client, 'Ingesting');
    const idle = await createKey(tracked.app.client, org, { name: 'idle' });
    await ageOrg(org, 40);
    await usedLongAgo(org.adminKeyId, 1, 1);
    // What an ingest transaction holds while its rollup rows reference the keys.
    const ingest = new pg.Client({ connectionString: tracked.dbUrl() });
    await ingest.connect();
    let finished = false;
    try {
      await ingest.query('begin');
      await ingest.query('select id from api_keys where org_id = $1 for key share', [org.orgId]);
      const run = actAsOperator(org).finally(() => (finished = true));
      const outcome = await waitFor(
        async () => {
          if (finished) return 'done';
          const { rows } = await sql<{ n: number }>`select count(*)::int as n
            from pg_stat_activity where datname = current_database()
              and wait_event_type = 'Lock' and query like '%rotated_from_id%'`.execute(db());
          return (rows[0]?.n ?? 0) > 0 ? 'blocked' : undefined;
        },
        { timeoutMs: 60_000 },
      );
      await ingest.query('commit');
      expect((await run).acted.map((k) => k.id)).toEqual([idle.id]);
      expect(outcome).toBe('done');
    } finally {
      await ingest.end();
    }
  });

  it('runs every other org when one org’s run fails', async () => {
    const failing = await createOrg(tracked.app.client, 'Failing');
    const fine = await createOrg(tracked.app.client, 'Fine');
    const idle = await Promise.all(
      [failing, fine].map((org) => createKey(tracked.app.client, org, { name: 'idle' })),
    );
    for (const org of [failing, fine]) {
      await ageOrg(org, 10);
      await use(org.adminKey, org.adminKeyId);
      await setPolicy(org, REVOKE);
    }
    await sql`create function fail_org_update() returns trigger language plpgsql as $$
      begin raise exception 'this org fails'; end $$`.execute(db());
    await sql`create trigger fail_org_update before update on api_keys for each row
      when (old.org_id = ${sql.lit(failing.orgId)}::uuid)
      execute function fail_org_update()`.execute(db());
    try {
      const report = await tracked.app.kt.dormantPolicies.runAll();
      expect(report.skipped).toBeGreaterThan(0);
      expect(await statusOf(idle[0]?.id ?? '')).toBe('active');
      expect(await statusOf(idle[1]?.id ?? '')).toBe('revoked');
    } finally {
      await sql`drop trigger fail_org_update on api_keys`.execute(db());
      await sql`drop function fail_org_update()`.execute(db());
    }
  });
});
