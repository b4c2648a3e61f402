import { describe, expect, it } from 'vitest';
import { useTestApp } from '../testing/harness.ts';
import { createKey, createOrg } from '../testing/factories.ts';

const app = useTestApp();

describe('audit trail of key changes', () => {
  it('records created, updated, rotated and revoked with actor, target and details', async () => {
    const { client, kt } = app();
    const org = await createOrg(client, 'Audited');
    const k = await createKey(client, org, { name: 'svc', scopes: ['keys:read'] });
    const base = `/api/orgs/${org.orgId}/api-keys/${k.id}`;
    await client.patch(base, { key: org.adminKey, body: { name: 'svc-2' } });
    const rotated = await client.post(`${base}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 30 },
    });
    await client.delete(`/api/orgs/${org.orgId}/api-keys/${rotated.body.api_key.id}?reason=done`, {
      key: org.adminKey,
    });
    const rows = await kt.database.db
      .selectFrom('audit_events')
      .select(['action', 'actor_type', 'actor_key_id', 'target_id', 'details'])
      .where('org_id', '=', org.orgId)
      .orderBy('occurred_at')
      .orderBy('action')
      .execute();
    const summary = rows.map((r) => [r.action, r.actor_type, r.target_id]);
    expect(summary).toEqual([
      ['key.created', 'operator', org.adminKeyId],
      ['key.created', 'key', k.id],
      ['key.updated', 'key', k.id],
      ['key.created', 'key', rotated.body.api_key.id],
      ['key.rotated', 'key', k.id],
      ['key.revoked', 'key', rotated.body.api_key.id],
    ]);
    expect(
      rows.filter((r) => r.actor_type === 'key').every((r) => r.actor_key_id === org.adminKeyId),
    ).toBe(true);
    expect(rows[2]?.details).toEqual({ changes: { name: { from: 'svc', to: 'svc-2' } } });
    expect(rows[4]?.details).toEqual({ new_key_id: rotated.body.api_key.id, overlap_seconds: 30 });
    expect(rows[5]?.details).toMatchObject({ reason: 'done' });
  });

  it('writes nothing when the change is refused', async () => {
    const { client, kt } = app();
    const org = await createOrg(client, 'Refused');
    const writer = await createKey(client, org, { scopes: ['keys:write'] });
    await client.post(`/api/orgs/${org.orgId}/api-keys`, {
      key: writer.key,
      body: { name: 'x', scopes: ['org:admin'] },
    });
    const n = await kt.database.db
      .selectFrom('audit_events')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('org_id', '=', org.orgId)
      .executeTakeFirstOrThrow();
    expect(Number(n.n)).toBe(2);
  });
});
