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
import { packEvents, USAGE_INGEST_QUEUE } from '../usage/usage.jobs.ts';
import type { UsageEvent } from '../usage/usage.types.ts';
import { operatorPlan } from './dormant.service.ts';

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
          where datname = current_database() and wait_event_type = 'Lock'`.execute(db());
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
});

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
    await setPolicy(quiet, REVOKE);
    await setPolicy(busy, REVOKE);
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
});
