import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
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

describe('webhook details in the audit trail', () => {
  it('never shows a URL path or a raw error, even in rows an older version wrote', async () => {
    const org = await createOrg(app().client, 'Legacy writer');
    // As a process of the previous version writes them during an upgrade, after migration 0010.
    const write = (action: string, details: object) =>
      sql`insert into audit_events (id, org_id, actor_type, action, target_type, details)
        values (${randomUUID()}, ${org.orgId}, 'system', ${action}, 'webhook',
          ${JSON.stringify(details)}::jsonb)`.execute(app().kt.database.db);
    await write('webhook.created', { url: 'https://hooks.slack.com/services/T1/B2/tok?x=1' });
    await write('webhook.updated', {
      changes: { url: { from: 'https://a.example/p/secret', to: 'https://b.example:8443/q' } },
    });
    await write('webhook.disabled', {
      url: 'https://10.20.0.7:8443/hook',
      last_error: 'connect ECONNREFUSED 10.20.0.7:8443',
    });
    const res = await app().client.get(`/api/orgs/${org.orgId}/audit-events`, {
      key: org.adminKey,
    });
    expect(res.status).toBe(200);
    const byAction = Object.fromEntries(
      (res.body.data as { action: string; details: unknown }[]).map((e) => [e.action, e.details]),
    );
    expect(byAction['webhook.created']).toEqual({ url: 'https://hooks.slack.com/…?…' });
    expect(byAction['webhook.updated']).toEqual({
      changes: { url: { from: 'https://a.example/…', to: 'https://b.example:8443/…' } },
    });
    expect(byAction['webhook.disabled']).toEqual({
      url: 'https://10.20.0.7:8443/…',
      last_error: 'other',
    });
    expect(res.text).not.toMatch(/services|secret|ECONNREFUSED|tok/);
  });
});
