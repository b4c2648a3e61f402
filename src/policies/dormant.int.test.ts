import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { impatientPolicies, useTrackingApp } from '../../test/admin-app.ts';
import { dormantFixtures, policyPath } from '../../test/dormant-fixtures.ts';
import { createKey, createOrg, type TestKey, type TestOrg } from '../testing/factories.ts';
import { cliEnv, runInProcess } from '../testing/cli.ts';
import { USAGE_INGEST_QUEUE } from '../usage/usage.jobs.ts';
import { runMaintenance } from '../../workers/maintenance.ts';
import { expectProblem } from '../testing/problem.ts';

const tracked = useTrackingApp();

const { db, ageOrg: ageKeys, use } = dormantFixtures(tracked);

async function audits(org: TestOrg, action: string) {
  const { rows } = await sql<{ target_id: string; actor_type: string; details: any }>`
    select target_id, actor_type, details from audit_events
    where org_id = ${org.orgId} and action = ${action} order by target_id`.execute(db());
  return rows;
}

async function setPolicy(org: TestOrg, body: object, key = org.adminKey) {
  const res = await tracked.app.client.put(policyPath(org), { key, body });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

const previewIds = async (org: TestOrg): Promise<string[]> => {
  const res = await tracked.app.client.get(`${policyPath(org)}/preview`, { key: org.adminKey });
  expect(res.status).toBe(200);
  return res.body.keys.map((k: { key_id: string }) => k.key_id).sort();
};

describe('dormant-key policy endpoints', () => {
  let org: TestOrg;
  beforeAll(async () => {
    org = await createOrg(tracked.app.client, 'Policy API');
  });

  it('is off by default, and PUT replaces it, audited', async () => {
    const res = await tracked.app.client.get(policyPath(org), { key: org.adminKey });
    expect(res.body).toEqual({
      enabled: false,
      after_days: 30,
      action: 'notify',
      exclude_environments: [],
      exclude_scopes: [],
      updated_at: null,
      last_run: null,
    });
    const body = {
      enabled: true,
      after_days: 90,
      action: 'revoke',
      exclude_environments: ['test'],
    };
    const saved = await setPolicy(org, body);
    expect(saved).toMatchObject({ ...body, exclude_scopes: [] });
    expect(new Date(saved.updated_at).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect((await tracked.app.client.get(policyPath(org), { key: org.adminKey })).body).toEqual(
      saved,
    );
    const [entry] = await audits(org, 'policy.updated');
    expect(entry?.details).toMatchObject({ policy: 'dormant-keys', from: null, to: body });
  });

  it('refuses bad policies with 400 and keeps the one it had', async () => {
    const before = (await tracked.app.client.get(policyPath(org), { key: org.adminKey })).body;
    const good = { enabled: true, after_days: 30, action: 'notify' };
    for (const bad of [
      { ...good, after_days: 6 },
      { ...good, after_days: 3651 },
      { ...good, after_days: 30.5 },
      { ...good, action: 'delete' },
      { ...good, enabled: 'yes' },
      { ...good, exclude_environments: ['prod'] },
      { ...good, exclude_scopes: ['Not A Scope'] },
      { ...good, surprise: 1 },
      { after_days: 30, action: 'notify' },
      [],
    ]) {
      const res = await tracked.app.client.put(policyPath(org), { key: org.adminKey, body: bad });
      expectProblem(res, 400, 'validation_failed');
    }
    expect((await tracked.app.client.get(policyPath(org), { key: org.adminKey })).body).toEqual(
      before,
    );
  });

  it('needs keys:read to read, keys:write to change, and hides other orgs', async () => {
    const reader = await createKey(tracked.app.client, org, { scopes: ['keys:read'] });
    const usageOnly = await createKey(tracked.app.client, org, { scopes: ['usage:read'] });
    expect((await tracked.app.client.get(policyPath(org), { key: reader.key })).status).toBe(200);
    expect(
      (await tracked.app.client.get(`${policyPath(org)}/preview`, { key: reader.key })).status,
    ).toBe(200);
    const body = { enabled: false, after_days: 30, action: 'notify' };
    expectProblem(
      await tracked.app.client.put(policyPath(org), { key: reader.key, body }),
      403,
      'insufficient_scope',
    );
    expectProblem(
      await tracked.app.client.get(policyPath(org), { key: usageOnly.key }),
      403,
      'insufficient_scope',
    );
    const other = await createOrg(tracked.app.client, 'Other');
    expectProblem(
      await tracked.app.client.get(policyPath(org), { key: other.adminKey }),
      404,
      'not_found',
    );
    expectProblem(
      await tracked.app.client.put(policyPath(org), { key: other.adminKey, body }),
      404,
      'not_found',
    );
    expectProblem(await tracked.app.client.get(policyPath(org)), 401, 'unauthenticated');
  });
});

describe('the daily run', () => {
  it('revokes exactly the previewed keys, spares one used after the preview, audits each once', async () => {
    const org = await createOrg(tracked.app.client, 'Revoking');
    const make = (o: object) => createKey(tracked.app.client, org, { name: 'k', ...o });
    const [idle1, idle2, late, used, testEnv, billing] = await Promise.all([
      make({}),
      make({}),
      make({}),
      make({}),
      make({ environment: 'test' }),
      make({ scopes: ['billing:admin'] }),
    ]);
    await ageKeys(org, 10);
    await use(org.adminKey, org.adminKeyId);
    await use(used.key, used.id);
    await setPolicy(org, {
      enabled: true,
      after_days: 7,
      action: 'revoke',
      exclude_environments: ['test'],
      exclude_scopes: ['billing:admin'],
    });
    const preview = await previewIds(org);
    expect(preview).toEqual([idle1.id, idle2.id, late.id].sort());
    await use(late.key, late.id);
    await tracked.app.kt.dormantPolicies.runAll();
    const revoked = await audits(org, 'key.revoked');
    expect(revoked.map((a) => a.target_id)).toEqual([idle1.id, idle2.id].sort());
    for (const a of revoked) {
      expect(a.actor_type).toBe('policy');
      expect(a.details).toMatchObject({ reason: 'dormant', after_days: 7 });
    }
    // The revoked key is refused at once; the others still work.
    expect((await tracked.app.client.get('/api/keys/self', { key: idle1.key })).status).toBe(401);
    for (const k of [late, used, testEnv, billing])
      expect((await tracked.app.client.get('/api/keys/self', { key: k.key })).status).toBe(200);
    const res = await tracked.app.client.get(`/api/orgs/${org.orgId}/audit-events`, {
      key: org.adminKey,
    });
    const entry = res.body.data.find((e: any) => e.action === 'key.revoked');
    expect(entry.actor).toEqual({ type: 'policy', key_id: null });
    // What the run did is on the policy (the Policies page shows it).
    const policy = async () =>
      (await tracked.app.client.get(policyPath(org), { key: org.adminKey })).body.last_run;
    const first = await policy();
    expect(first).toMatchObject({ action: 'revoke', acted: 2, downgraded: null, skipped: null });
    expect(Date.parse(first.at)).toBeGreaterThan(Date.now() - 60_000);
    // Again: nothing left to do, nothing audited twice.
    await tracked.app.kt.dormantPolicies.runAll();
    expect(await audits(org, 'key.revoked')).toHaveLength(2);
    // A second run the same UTC day adds to the first: its "nothing" does not hide the 2.
    const second = await policy();
    expect(second).toMatchObject({ action: 'revoke', acted: 2, skipped: null });
    expect(Date.parse(second.at)).toBeGreaterThanOrEqual(Date.parse(first.at));
    expect(await previewIds(org)).toEqual([]);
  });

  it('notifies once per dormant spell, however many runs overlap', async () => {
    const org = await createOrg(tracked.app.client, 'Notifying');
    const keys: TestKey[] = [];
    for (let i = 0; i < 30; i++)
      keys.push(await createKey(tracked.app.client, org, { name: `k${i}` }));
    await ageKeys(org, 10);
    await use(org.adminKey, org.adminKeyId);
    await setPolicy(org, { enabled: true, after_days: 7, action: 'notify' });
    expect(await previewIds(org)).toHaveLength(30);
    await Promise.all([
      tracked.app.kt.dormantPolicies.runAll(),
      tracked.app.kt.dormantPolicies.runAll(),
    ]);
    const notified = await audits(org, 'key.dormant');
    expect(notified.map((a) => a.target_id)).toEqual(keys.map((k) => k.id).sort());
    expect(notified.every((a) => a.actor_type === 'policy')).toBe(true);
    expect(await previewIds(org)).toEqual([]);
    // Nothing is revoked by a notifying policy.
    expect(await audits(org, 'key.revoked')).toEqual([]);
    // Notified 9 days ago, used 8 days ago, idle since: a new spell, a new notice.
    const first = keys[0] as TestKey;
    await use(first.key, first.id);
    expect(await previewIds(org)).toEqual([]);
    await sql`update api_keys set dormant_notified_at = now() - interval '9 days'
      where id = ${first.id}`.execute(db());
    await sql`update api_key_usage_totals set last_used_at = now() - interval '8 days'
      where key_id = ${first.id}`.execute(db());
    expect(await previewIds(org)).toEqual([first.id]);
    await tracked.app.kt.dormantPolicies.runAll();
    expect((await audits(org, 'key.dormant')).filter((a) => a.target_id === first.id)).toHaveLength(
      2,
    );
  });

  it('revokes only keys the policy’s author could revoke', async () => {
    const org = await createOrg(tracked.app.client, 'Authority');
    const writer = await createKey(tracked.app.client, org, {
      scopes: ['keys:write', 'keys:read'],
    });
    const covered = await createKey(tracked.app.client, org, { scopes: ['keys:read'] });
    await ageKeys(org, 10);
    await use(writer.key, writer.id);
    await setPolicy(org, { enabled: true, after_days: 7, action: 'revoke' }, writer.key);
    // The org:admin key is dormant too, but beyond a keys:write key's reach.
    expect(await previewIds(org)).toEqual([covered.id]);
    await tracked.app.kt.dormantPolicies.runAll();
    expect((await audits(org, 'key.revoked')).map((a) => a.target_id)).toEqual([covered.id]);
  });
});

describe('start-up maintenance', () => {
  it('leaves policies to the daily schedule', async () => {
    const org = await createOrg(tracked.app.client, 'Start-up');
    const idle = await createKey(tracked.app.client, org, { name: 'idle' });
    await ageKeys(org, 10);
    await use(org.adminKey, org.adminKeyId);
    await setPolicy(org, { enabled: true, after_days: 7, action: 'revoke' });
    await runMaintenance(tracked.app.kt, { daily: false });
    expect(await audits(org, 'key.revoked')).toEqual([]);
    await runMaintenance(tracked.app.kt, { daily: true });
    expect((await audits(org, 'key.revoked')).map((a) => a.target_id)).toEqual([idle.id]);
  });
});

describe('a lagging usage pipeline', () => {
  it('makes the run act on nothing rather than on keys whose use is not ingested yet', async () => {
    const org = await createOrg(tracked.app.client, 'Lagging');
    const idle = await createKey(tracked.app.client, org, { name: 'idle' });
    await ageKeys(org, 10);
    await use(org.adminKey, org.adminKeyId);
    await setPolicy(org, { enabled: true, after_days: 7, action: 'revoke' });
    expect(await previewIds(org)).toEqual([idle.id]);
    // A usage job queued now and not ingested (it may start only in an hour).
    const boss = await tracked.app.kt.queue();
    const jobId = await boss.send(USAGE_INGEST_QUEUE, { v: 2, n: 0, z: '' }, { startAfter: 3600 });
    const policies = impatientPolicies(tracked.app.kt);
    try {
      const report = await policies.runAll();
      expect(report.acted).toBe(0);
      expect(report.skipped).toBeGreaterThan(0);
      expect(await audits(org, 'key.revoked')).toEqual([]);
    } finally {
      await sql`delete from pgboss.job where id = ${jobId}`.execute(db());
    }
    await policies.runAll();
    expect((await audits(org, 'key.revoked')).map((a) => a.target_id)).toEqual([idle.id]);
  });
});

describe('keytrail keys dormant --revoke', () => {
  it('lists with --dry-run, revokes with --revoke (actor operator), refuses --dry-run alone', async () => {
    const org = await createOrg(tracked.app.client, 'By hand');
    const idle = await createKey(tracked.app.client, org, { name: 'idle' });
    await ageKeys(org, 40);
    await use(org.adminKey, org.adminKeyId);
    const env = cliEnv(tracked.dbUrl());
    const args = ['keys', 'dormant', '--org', org.orgId, '--json'];
    const dry = await runInProcess([...args, '--revoke', '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    const planned = JSON.parse(dry.stdout);
    expect(planned).toMatchObject({ dry_run: true, revoked: 0, dormant_days: 30 });
    expect(planned.keys.map((k: { id: string }) => k.id)).toEqual([idle.id]);
    expect(await audits(org, 'key.revoked')).toEqual([]);
    const done = await runInProcess([...args, '--revoke'], env);
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ dry_run: false, revoked: 1 });
    const [entry] = await audits(org, 'key.revoked');
    expect(entry).toMatchObject({ target_id: idle.id, actor_type: 'operator' });
    const alone = await runInProcess(['keys', 'dormant', '--org', org.orgId, '--dry-run'], env);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain('--dry-run goes with --revoke');
  });
});
