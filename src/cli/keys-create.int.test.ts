/**
 * `keytrail keys create`: the operator's way to mint a key (an org:admin key for an org that
 * lost its own), checked like POST /api/orgs/:orgId/api-keys and audited with actor operator.
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createKey, createOrg } from '../testing/factories.ts';
import { runInProcess, useCliTestApp } from '../testing/cli.ts';
import { leakScanner } from '../testing/leak-scan.ts';

const t = useCliTestApp();
const cli = (...args: string[]) => runInProcess(args, t.env);
/** `keytrail keys create --org ORG …rest` */
const createFor = (orgId: string, ...rest: string[]) =>
  cli('keys', 'create', '--org', orgId, ...rest);

describe('keys create', () => {
  it('gives a locked-out org a new org:admin key, audited with actor operator', async () => {
    const org = await createOrg(t.app.client, 'Locked out');
    const revoked = await t.app.client.delete(`/api/orgs/${org.orgId}/api-keys/${org.adminKeyId}`, {
      key: org.adminKey,
    });
    expect(revoked.status).toBe(200);
    const res = await createFor(
      org.orgId,
      '--scopes',
      'org:admin',
      '--name',
      'break-glass',
      '--json',
    );
    expect(res).toMatchObject({ code: 0, stderr: '' });
    const created = JSON.parse(res.stdout);
    leakScanner.remember(created.key);
    expect(created.api_key).toMatchObject({
      org_id: org.orgId,
      name: 'break-glass',
      scopes: ['org:admin'],
      status: 'active',
      expires_at: null,
    });
    // The same shape as the API's answer to a key creation.
    const fromApi = await createKey(t.app.client, org, { scopes: ['keys:read'] }, created.key);
    expect(Object.keys(created).sort()).toEqual(['api_key', 'key']);
    expect(Object.keys(created.api_key).sort()).toEqual(Object.keys(fromApi.body).sort());
    const audit = await sql<{ actor_type: string; actor_key_id: string | null; details: any }>`
      select actor_type, actor_key_id, details from audit_events
      where org_id = ${org.orgId} and action = 'key.created' and target_id = ${created.api_key.id}`.execute(
      t.app.kt.database.db,
    );
    expect(audit.rows).toEqual([
      {
        actor_type: 'operator',
        actor_key_id: null,
        details: expect.objectContaining({ scopes: ['org:admin'], name: 'break-glass' }),
      },
    ]);
  });

  it('creates an org:admin key at the org’s key limit, and only an org:admin key', async () => {
    const org = await createOrg(t.app.client, 'At the limit');
    await createKey(t.app.client, org, { scopes: ['keys:read'] });
    const env = { ...t.env, KEYTRAIL_MAX_KEYS_PER_ORG: '2' };
    const create = (scopes: string) =>
      runInProcess(['keys', 'create', '--org', org.orgId, '--scopes', scopes, '--json'], env);
    const refused = await create('keys:read');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('2 active keys (limit 2)');
    const res = await create('org:admin');
    expect(res.code, res.stderr).toBe(0);
    const created = JSON.parse(res.stdout);
    leakScanner.remember(created.key);
    expect(created.api_key).toMatchObject({ scopes: ['org:admin'], status: 'active' });
  });

  it('prints the key once in text, with several scopes and an expiry', async () => {
    const org = await createOrg(t.app.client, 'Texty');
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const res = await createFor(
      org.orgId,
      '--scopes',
      'keys:read, usage:read',
      '--expires-at',
      expires,
    );
    expect(res.code, res.stderr).toBe(0);
    const match =
      /^key ([0-9a-f-]{36}) \(operator\) in org ([0-9a-f-]{36}), scopes keys:read,usage:read\nkey \(shown once\): (sk_live_\S+)\n$/.exec(
        res.stdout,
      );
    expect(match?.[2]).toBe(org.orgId);
    leakScanner.remember(match?.[3] ?? '');
    const self = await t.app.client.get('/api/keys/self', { key: match?.[3] });
    expect(self.body).toMatchObject({ key_id: match?.[1], expires_at: expires });
  });

  it.each([
    [[], 'keys create needs --org ID'],
    [['--org', 'nope', '--scopes', 'org:admin'], '--org must be an org id (a UUID), got "nope"'],
    [['--scopes', 'org:admin'], 'keys create needs --org ID'],
    [['--org', 'ORG'], 'keys create needs --scopes'],
    [['--org', 'ORG', '--scopes', 'Not A Scope'], '--scopes ("Not A Scope")'],
    [['--org', 'ORG', '--scopes', 'org:admin,'], '--scopes ("")'],
    [['--org', 'ORG', '--scopes', 'org:admin', '--name', ''], '--name'],
    [['--org', 'ORG', '--scopes', 'org:admin', '--expires-at', 'soon'], '--expires-at ("soon")'],
    [['--org', 'ORG', '--scopes', 'org:admin', '--expires-at', '2020-01-01T00:00:00Z'], 'future'],
    [['--org', 'ORG', '--scopes', 'org:admin', '--environment', 'live'], "'--environment'"],
  ])('refuses %j with exit 2 and one clear line', async (flags, message) => {
    const org = await createOrg(t.app.client, 'Refusals');
    const res = await cli('keys', 'create', ...flags.map((f) => (f === 'ORG' ? org.orgId : f)));
    expect(res.code, res.stderr).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain(message);
    expect(res.stderr.split('\n')).toHaveLength(2);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from api_keys
      where org_id = ${org.orgId}`.execute(t.app.kt.database.db);
    expect(rows[0]?.n).toBe(1);
  });

  it('reports an unknown org (exit 1) and creates nothing', async () => {
    const res = await createFor('018f0000-0000-7000-8000-000000000000', '--scopes', 'org:admin');
    expect(res).toMatchObject({ code: 1, stdout: '', stderr: 'keytrail: org not found\n' });
  });
});
