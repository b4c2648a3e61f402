/**
 * Issue 18: a policy never locks its org out (the last org:admin key, its own author) and acts
 * with its author's authority as of the run. Per-org usage freshness and the daily run's
 * isolation: dormant-freshness.int.test.ts.
 */
import { sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { useTrackingApp } from '../../test/admin-app.ts';
import { dormantFixtures, policyPath, REVOKE } from '../../test/dormant-fixtures.ts';
import { cliEnv, runInProcess } from '../testing/cli.ts';
import { createKey, createOrg } from '../testing/factories.ts';
import { waitFor } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';

const tracked = useTrackingApp();
const fixtures = dormantFixtures(tracked);
const { db, setCreated, ageOrg, usedLongAgo, use, statusOf } = fixtures;
const { audits, setPolicy, preview, actAsOperator, rotate } = fixtures;

/** An org with a second org:admin key named `admin`, its keys created `days` ago. */
async function orgWithAdmin(name: string, admin: string, days: number) {
  const org = await createOrg(tracked.app.client, name);
  const key = await createKey(tracked.app.client, org, { name: admin, scopes: ['org:admin'] });
  await ageOrg(org, days);
  return { org, admin: key };
}

/** An org whose keys:write key saved a revoking policy; an idle keys:read key; the admin in use. */
async function orgWithWriterPolicy(name: string) {
  const org = await createOrg(tracked.app.client, name);
  const writer = await createKey(tracked.app.client, org, { scopes: ['keys:write', 'keys:read'] });
  const idle = await createKey(tracked.app.client, org, { name: 'idle', scopes: ['keys:read'] });
  await ageOrg(org, 10);
  await use(org.adminKey, org.adminKeyId);
  await setPolicy(org, REVOKE, writer.key);
  return { org, writer, idle };
}

describe('the last org:admin key', () => {
  it('is spared by keys dormant --revoke, previewed as spared, notified once', async () => {
    const { org, admin: second } = await orgWithAdmin('Last admin', 'admin 2', 40);
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
    const { org, admin: second } = await orgWithAdmin('Racing revocation', 'admin 2', 40);
    await usedLongAgo(org.adminKeyId, 1, 40);
    await setCreated([second.id], 35);
    // A revocation by hand of the key the pass would keep, not committed yet.
    const other = new pg.Client({ connectionString: tracked.dbUrl() });
    await other.connect();
    try {
      await other.query('begin');
      await other.query('update api_keys set revoked_at = now() where id = $1', [second.id]);
      const run = actAsOperator(org);
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
    const successor = (await rotate(org, org.adminKeyId, 30 * 86_400)).api_key.id;
    await setCreated([successor], 20); // never used since: dormant, older than the old key's use
    await use(org.adminKey, org.adminKeyId); // the old key is still in use during the overlap
    const result = await actAsOperator(org);
    expect(result.spared.map((k) => [k.id, k.reason])).toEqual([[successor, 'last_admin_key']]);
    expect(await statusOf(successor)).toBe('active');
  });

  it('keeps a dormant admin key when the only other one expires within the policy’s days', async () => {
    const { org, admin: breakGlass } = await orgWithAdmin('Expiring admin', 'break-glass', 40);
    await use(org.adminKey, org.adminKeyId); // in daily use, but expiring in an hour
    await sql`update api_keys set expires_at = now() + interval '1 hour'
      where id = ${org.adminKeyId}`.execute(db());
    const result = await actAsOperator(org);
    expect(result.acted).toEqual([]);
    expect(result.spared.map((k) => [k.id, k.reason])).toEqual([[breakGlass.id, 'last_admin_key']]);
    expect(await statusOf(breakGlass.id)).toBe('active');
  });
});

describe('a policy’s authority', () => {
  it('spares the key that saved it, so it never revokes its own authority', async () => {
    const { org, admin: author } = await orgWithAdmin('Author spared', 'author', 10);
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
    const { org, writer, idle } = await orgWithWriterPolicy('Rotated author');
    const rotated = await rotate(org, writer.id, 0);
    await use(rotated.key, rotated.api_key.id);
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
    const successor = (await rotate(org, writer.id, 86_400)).api_key.id;
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
    const { org, writer, idle } = await orgWithWriterPolicy('Author revoked mid-run');
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
