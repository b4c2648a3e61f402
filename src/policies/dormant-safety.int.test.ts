/**
 * Issue 18: a policy never locks its org out (the last org:admin key, its own author), acts with
 * its author's authority as of the run, and one org's usage backlog holds back no other org.
 */
import { sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { impatientPolicies, useTrackingApp } from '../../test/admin-app.ts';
import { cliEnv, runInProcess } from '../testing/cli.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { waitFor } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';
import { packEvents, USAGE_DEAD_LETTER_QUEUE, USAGE_INGEST_QUEUE } from '../usage/usage.jobs.ts';
import type { UsageEvent } from '../usage/usage.types.ts';
import { operatorPlan } from './dormant.service.ts';
import { whenUsageComplete } from './usage-freshness.ts';

const tracked = useTrackingApp();

const db = () => tracked.app.kt.database.db;
const policyPath = (org: TestOrg) => `/api/orgs/${org.orgId}/policies/dormant-keys`;
const REVOKE = { enabled: true, after_days: 7, action: 'revoke' };

async function setCreated(keyIds: string[], days: number): Promise<void> {
  await sql`update api_keys set created_at = now() - make_interval(days => ${days})
    where id = any(${keyIds}::uuid[])`.execute(db());
}

async function ageOrg(org: TestOrg, days: number): Promise<void> {
  await sql`update api_keys set created_at = now() - make_interval(days => ${days})
    where org_id = ${org.orgId}`.execute(db());
}

/** Waits until `requests` uses of the key are ingested, then moves its last use `days` back. */
async function usedLongAgo(keyId: string, requests: number, days: number): Promise<void> {
  await waitFor(async () => {
    const { rows } = await sql<{ n: string }>`select request_count as n
      from api_key_usage_totals where key_id = ${keyId}`.execute(db());
    return Number(rows[0]?.n ?? 0) >= requests;
  });
  await sql`update api_key_usage_totals set last_used_at = now() - make_interval(days => ${days})
    where key_id = ${keyId}`.execute(db());
}

async function statusOf(keyId: string): Promise<'active' | 'revoked'> {
  const { rows } = await sql<{ revoked: boolean }>`select revoked_at is not null as revoked
    from api_keys where id = ${keyId}`.execute(db());
  return rows[0]?.revoked ? 'revoked' : 'active';
}

async function audits(org: TestOrg, action: string) {
  const { rows } = await sql<{ target_id: string | null; actor_type: string; details: any }>`
    select target_id, actor_type, details from audit_events
    where org_id = ${org.orgId} and action = ${action} order by occurred_at, target_id`.execute(
    db(),
  );
  return rows;
}

async function setPolicy(org: TestOrg, body: object, key = org.adminKey) {
  const res = await tracked.app.client.put(policyPath(org), { key, body });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

const preview = async (org: TestOrg) => {
  const res = await tracked.app.client.get(`${policyPath(org)}/preview`, { key: org.adminKey });
  expect(res.status).toBe(200);
  return res.body;
};

/** A real tracked request with `key`, waited for until its use is in the totals. */
async function use(key: string, keyId: string): Promise<void> {
  const before = Date.now();
  expect((await tracked.app.client.get('/api/keys/self', { key })).status).toBe(200);
  await waitFor(async () => {
    const { rows } = await sql<{ at: Date | null }>`select last_used_at as at
      from api_key_usage_totals where key_id = ${keyId}`.execute(db());
    const at = rows[0]?.at;
    return at && at.getTime() >= before - 1000 ? at : undefined;
  });
}

describe('the last org:admin key', () => {
  it('is spared by keys dormant --revoke, previewed as spared, notified once', async () => {
    const org = await createOrg(tracked.app.client, 'Last admin');
    const second = await createKey(tracked.app.client, org, {
      name: 'admin 2',
      scopes: ['org:admin'],
    });
    const idle = await createKey(tracked.app.client, org, { name: 'idle' });
    await ageOrg(org, 40);
    await usedLongAgo(org.adminKeyId, 2, 40);
    await setCreated([second.id], 35); // the most recently seen admin key: the one kept
    const env = cliEnv(tracked.dbUrl());
    const args = ['keys', 'dormant', '--org', org.orgId, '--json', '--revoke'];
    const dry = JSON.parse((await runInProcess([...args, '--dry-run'], env)).stdout);
    expect(dry.keys.map((k: { id: string }) => k.id).sort()).toEqual(
      [org.adminKeyId, idle.id].sort(),
    );
    expect(dry.spared).toEqual([
      { id: second.id, name: 'admin 2', prefix: second.body.prefix, reason: 'last_admin_key' },
    ]);
    const done = await runInProcess(args, env);
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ revoked: 2, spared: dry.spared });
    expect(await statusOf(second.id)).toBe('active');
    expect(await statusOf(org.adminKeyId)).toBe('revoked');
    // Again: still spared, not notified twice in one dormant spell.
    const again = JSON.parse((await runInProcess(args, env)).stdout);
    expect(again).toMatchObject({ revoked: 0, spared: dry.spared });
    const notices = await audits(org, 'key.dormant');
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({
      target_id: second.id,
      actor_type: 'operator',
      details: { spared: 'last_admin_key' },
    });
    const text = await runInProcess(
      args.filter((a) => a !== '--json'),
      env,
    );
    expect(text.stdout).toContain(`spared ${second.id} (${second.body.prefix}): the org's last`);
  });

  it('counts a revocation that commits while a pass waits, never leaving no admin key', async () => {
    const org = await createOrg(tracked.app.client, 'Racing revocation');
    const second = await createKey(tracked.app.client, org, {
      name: 'admin 2',
      scopes: ['org:admin'],
    });
    await ageOrg(org, 40);
    await usedLongAgo(org.adminKeyId, 1, 40);
    await setCreated([second.id], 35);
    // A revocation by hand of the key the pass would keep, not committed yet.
    const other = new pg.Client({ connectionString: tracked.dbUrl() });
    await other.connect();
    try {
      await other.query('begin');
      await other.query('update api_keys set revoked_at = now() where id = $1', [second.id]);
      const policies = tracked.app.kt.dormantPolicies;
      const plan = operatorPlan({ ...(await policies.get(org.orgId)), after_days: 7 });
      const run = policies.act(org.orgId, plan, { type: 'operator' }, { usageChecked: true });
      await waitFor(async () => {
        const { rows } = await sql<{ n: number }>`select count(*)::int as n
          from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'
            and query like '%rotated_from_id%for no key update%'`.execute(db());
        return (rows[0]?.n ?? 0) > 0;
      });
      await other.query('commit');
      const result = await run;
      expect(result.acted).toEqual([]);
      expect(result.spared.map((k) => [k.id, k.reason])).toEqual([
        [org.adminKeyId, 'last_admin_key'],
      ]);
    } finally {
      await other.end();
    }
    expect(await statusOf(org.adminKeyId)).toBe('active');
  });

  it('keeps the key that replaced a rotated one, not the one whose overlap runs out', async () => {
    const org = await createOrg(tracked.app.client, 'Rotating admin');
    await ageOrg(org, 40);
    const rotated = await tracked.app.client.post(
      `/api/orgs/${org.orgId}/api-keys/${org.adminKeyId}/rotate`,
      { key: org.adminKey, body: { overlap_seconds: 30 * 86_400 } },
    );
    expect(rotated.status).toBe(201);
    const successor = rotated.body.api_key.id as string;
    await setCreated([successor], 20); // never used since: dormant, older than the old key's use
    await use(org.adminKey, org.adminKeyId); // the old key is still in use during the overlap
    const plan = operatorPlan({
      ...(await tracked.app.kt.dormantPolicies.get(org.orgId)),
      after_days: 7,
    });
    const result = await tracked.app.kt.dormantPolicies.act(
      org.orgId,
      plan,
      { type: 'operator' },
      { usageChecked: true },
    );
    expect(result.spared.map((k) => [k.id, k.reason])).toEqual([[successor, 'last_admin_key']]);
    expect(await statusOf(successor)).toBe('active');
  });

  it('keeps a dormant admin key when the only other one expires within the policy’s days', async () => {
    const org = await createOrg(tracked.app.client, 'Expiring admin');
    const breakGlass = await createKey(tracked.app.client, org, {
      name: 'break-glass',
      scopes: ['org:admin'],
    });
    await ageOrg(org, 40);
    await use(org.adminKey, org.adminKeyId); // in daily use, but expiring in an hour
    await sql`update api_keys set expires_at = now() + interval '1 hour'
      where id = ${org.adminKeyId}`.execute(db());
    const policies = tracked.app.kt.dormantPolicies;
    const plan = operatorPlan({ ...(await policies.get(org.orgId)), after_days: 7 });
    const result = await policies.act(
      org.orgId,
      plan,
      { type: 'operator' },
      { usageChecked: true },
    );
    expect(result.acted).toEqual([]);
    expect(result.spared.map((k) => [k.id, k.reason])).toEqual([[breakGlass.id, 'last_admin_key']]);
    expect(await statusOf(breakGlass.id)).toBe('active');
  });
});

describe('a policy’s authority', () => {
  it('spares the key that saved it, so it never revokes its own authority', async () => {
    const org = await createOrg(tracked.app.client, 'Author spared');
    const author = await createKey(tracked.app.client, org, {
      name: 'author',
      scopes: ['org:admin'],
    });
    const idle = await createKey(tracked.app.client, org, { name: 'idle' });
    await ageOrg(org, 10);
    await setPolicy(org, REVOKE, author.key);
    await usedLongAgo(author.id, 1, 10); // the author's only use is that save, long ago
    await use(org.adminKey, org.adminKeyId);
    const planned = await preview(org);
    expect(planned.action).toBe('revoke');
    expect(planned.keys.map((k: { key_id: string }) => k.key_id)).toEqual([idle.id]);
    expect(planned.spared).toEqual([
      expect.objectContaining({ key_id: author.id, reason: 'policy_author' }),
    ]);
    await tracked.app.kt.dormantPolicies.runAll();
    expect(await statusOf(idle.id)).toBe('revoked');
    expect(await statusOf(author.id)).toBe('active');
    const notices = await audits(org, 'key.dormant');
    expect(notices.map((a) => [a.target_id, a.details.spared])).toEqual([
      [author.id, 'policy_author'],
    ]);
  });

  it('cannot be replaced by a key holding less than its author', async () => {
    const org = await createOrg(tracked.app.client, 'Replace');
    const writer = await createKey(tracked.app.client, org, {
      scopes: ['keys:write', 'keys:read'],
    });
    await setPolicy(org, REVOKE);
    const disable = { enabled: false, after_days: 30, action: 'notify' };
    const res = await tracked.app.client.put(policyPath(org), { key: writer.key, body: disable });
    expectProblem(res, 403, 'insufficient_scope');
    expect(res.body.detail).toContain('org:admin');
    expect(
      (await tracked.app.client.get(policyPath(org), { key: org.adminKey })).body,
    ).toMatchObject(REVOKE);
    // Saved by a writer: an equal key may replace it, a narrower one may not, the admin may.
    const other = await createOrg(tracked.app.client, 'Replace by peers');
    const make = (scopes: string[]) => createKey(tracked.app.client, other, { scopes });
    const [first, peer, narrow] = await Promise.all([
      make(['keys:write', 'keys:read']),
      make(['keys:write', 'keys:read']),
      make(['keys:write']),
    ]);
    await setPolicy(other, REVOKE, first.key);
    await setPolicy(other, { ...REVOKE, after_days: 8 }, peer.key);
    expectProblem(
      await tracked.app.client.put(policyPath(other), { key: narrow.key, body: disable }),
      403,
      'insufficient_scope',
    );
    await setPolicy(other, disable);
  });

  it('acts within what its author can do now: narrowed, then revoked', async () => {
    const org = await createOrg(tracked.app.client, 'Authority now');
    const writer = await createKey(tracked.app.client, org, {
      scopes: ['keys:write', 'keys:read', 'usage:read'],
    });
    const usageKey = await createKey(tracked.app.client, org, {
      name: 'u',
      scopes: ['usage:read'],
    });
    const readKey = await createKey(tracked.app.client, org, { name: 'r', scopes: ['keys:read'] });
    await ageOrg(org, 10);
    await use(org.adminKey, org.adminKeyId);
    await use(writer.key, writer.id);
    await setPolicy(org, REVOKE, writer.key);
    // Narrowed: the policy no longer reaches usage:read keys.
    const patched = await tracked.app.client.patch(`/api/orgs/${org.orgId}/api-keys/${writer.id}`, {
      key: org.adminKey,
      body: { scopes: ['keys:write', 'keys:read'] },
    });
    expect(patched.status).toBe(200);
    await tracked.app.kt.dormantPolicies.runAll();
    expect(await statusOf(readKey.id)).toBe('revoked');
    expect(await statusOf(usageKey.id)).toBe('active');
    // Revoked: the policy notifies only, says why in the preview, audits the downgrade once.
    await tracked.app.client.delete(`/api/orgs/${org.orgId}/api-keys/${writer.id}`, {
      key: org.adminKey,
    });
    const planned = await preview(org);
    expect(planned).toMatchObject({ action: 'notify', spared: [] });
    expect(planned.downgraded).toContain('the author key was revoked');
    await tracked.app.kt.dormantPolicies.runAll();
    await tracked.app.kt.dormantPolicies.runAll();
    expect(await statusOf(usageKey.id)).toBe('active');
    expect((await audits(org, 'key.dormant')).map((a) => a.target_id)).toEqual([usageKey.id]);
    const downgrades = await audits(org, 'policy.downgraded');
    expect(downgrades).toHaveLength(1);
    expect(downgrades[0]).toMatchObject({ actor_type: 'policy', details: { to: 'notify' } });
    // The writer's authority is gone, so a lesser key may now replace the policy.
    const reader = await createKey(tracked.app.client, org, { scopes: ['keys:write'] });
    await setPolicy(org, { ...REVOKE, enabled: false }, reader.key);
  });

  it('keeps its authority when its author key is rotated', async () => {
    const org = await createOrg(tracked.app.client, 'Rotated author');
    const writer = await createKey(tracked.app.client, org, {
      scopes: ['keys:write', 'keys:read'],
    });
    const idle = await createKey(tracked.app.client, org, { name: 'idle', scopes: ['keys:read'] });
    await ageOrg(org, 10);
    await use(org.adminKey, org.adminKeyId);
    await setPolicy(org, REVOKE, writer.key);
    const rotated = await tracked.app.client.post(
      `/api/orgs/${org.orgId}/api-keys/${writer.id}/rotate`,
      {
        key: org.adminKey,
        body: { overlap_seconds: 0 },
      },
    );
    expect(rotated.status).toBe(201);
    await use(rotated.body.key, rotated.body.api_key.id);
    expect((await preview(org)).downgraded).toBeNull();
    await tracked.app.kt.dormantPolicies.runAll();
    expect(await statusOf(idle.id)).toBe('revoked');
  });

  it('keeps its authority through an active key of the rotation chain, not a revoked successor', async () => {
    const org = await createOrg(tracked.app.client, 'Revoked successor');
    const writer = await createKey(tracked.app.client, org, {
      scopes: ['keys:write', 'keys:read'],
    });
    await setPolicy(org, REVOKE, writer.key);
    const rotated = await tracked.app.client.post(
      `/api/orgs/${org.orgId}/api-keys/${writer.id}/rotate`,
      { key: org.adminKey, body: { overlap_seconds: 86_400 } },
    );
    expect(rotated.status).toBe(201);
    const successor = rotated.body.api_key.id as string;
    const gone = await tracked.app.client.delete(`/api/orgs/${org.orgId}/api-keys/${successor}`, {
      key: org.adminKey,
    });
    expect(gone.status).toBe(200);
    // The original is active until its overlap ends: the policy still acts with it.
    expect(await preview(org)).toMatchObject({ action: 'revoke', downgraded: null });
    await sql`update api_keys set expires_at = now() - interval '1 second'
      where id = ${writer.id}`.execute(db());
    expect((await preview(org)).downgraded).toContain('the author key was revoked');
  });

  it('stops revoking mid-run when its author is revoked after the run planned', async () => {
    const org = await createOrg(tracked.app.client, 'Author revoked mid-run');
    const writer = await createKey(tracked.app.client, org, {
      scopes: ['keys:write', 'keys:read'],
    });
    const idle = await createKey(tracked.app.client, org, { name: 'idle', scopes: ['keys:read'] });
    await ageOrg(org, 10);
    await use(org.adminKey, org.adminKeyId);
    await setPolicy(org, REVOKE, writer.key);
    const policies = tracked.app.kt.dormantPolicies;
    const { plan } = await policies.preview(org.orgId);
    expect(plan).toMatchObject({ action: 'revoke', authorKeyId: writer.id });
    await tracked.app.client.delete(`/api/orgs/${org.orgId}/api-keys/${writer.id}`, {
      key: org.adminKey,
    });
    const downgrades: string[] = [];
    const onDowngrade = (why: string) => {
      downgrades.push(why);
      return Promise.resolve();
    };
    const result = await policies.act(
      org.orgId,
      plan,
      { type: 'policy' },
      { usageChecked: true, onDowngrade },
    );
    expect(await statusOf(idle.id)).toBe('active');
    expect(result.acted.map((k) => k.id)).toContain(idle.id); // notified instead
    expect(downgrades).toEqual([expect.stringContaining('the author key was revoked')]);
  });
});

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
  const event = (orgId: string, keyId: string): UsageEvent => ({
    eventId: crypto.randomUUID(),
    orgId,
    keyId,
    occurredAt: Date.now(),
    method: 'GET',
    route: '/v1/things',
    status: 200,
    latencyMs: 1,
    ip: null,
    userAgent: null,
    outcome: 'success',
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
      const policies = tracked.app.kt.dormantPolicies;
      const plan = operatorPlan({ ...(await policies.get(org.orgId)), after_days: 7 });
      const run = policies
        .act(org.orgId, plan, { type: 'operator' }, { usageChecked: true })
        .finally(() => (finished = true));
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
