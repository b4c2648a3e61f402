/** The webhook endpoints' API (SPEC §10): CRUD, validation, scopes, audit, secrets shown once. */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createKey, createOrg } from '../testing/factories.ts';
import { useTestApp } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';
import { WEBHOOK_DEFAULTS } from '../platform/config.ts';
import { pruneWebhookMessages, WEBHOOK_RETENTION_DAYS } from './webhooks.retention.ts';

const app = useTestApp({
  config: {
    webhooks: {
      ...WEBHOOK_DEFAULTS,
      maxPerOrg: 3,
      addresses: { allowLoopback: false, allowedNetworks: ['10.20.0.0/16'] },
    },
  },
});
const base = (orgId: string) => `/api/orgs/${orgId}/webhooks`;
const valid = { url: 'https://hooks.example.com/keytrail', event_types: ['key.revoked'] };

describe('webhook endpoints', () => {
  it('creates an endpoint, shows its secret once, and audits the change without it', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Hooks');
    const created = await client.post(base(org.orgId), {
      key: org.adminKey,
      body: { ...valid, description: 'SIEM', event_types: ['key.revoked', 'key.revoked'] },
    });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(created.body.webhook).toMatchObject({
      url: valid.url,
      description: 'SIEM',
      event_types: ['key.revoked'],
      enabled: true,
      disabled_reason: null,
      failing_since: null,
    });
    const id = created.body.webhook.id as string;
    const read = await client.get(`${base(org.orgId)}/${id}`, { key: org.adminKey });
    expect(read.body).toEqual(created.body.webhook);
    expect(read.text).not.toContain('whsec_');
    const list = await client.get(base(org.orgId), { key: org.adminKey });
    expect(list.body.data).toEqual([created.body.webhook]);
    expect(list.text).not.toContain('whsec_');
    // At rest the secret is sealed: the row does not hold it in the clear.
    const { rows } = await sql<{ secret: Buffer }>`select secret from webhook_endpoints
      where id = ${id}`.execute(app().kt.database.db);
    expect(rows[0]?.secret.toString('latin1')).not.toContain(created.body.secret.slice(6, 20));
    const audit = await client.get(`/api/orgs/${org.orgId}/audit-events?action=webhook.created`, {
      key: org.adminKey,
    });
    expect(audit.body.data).toHaveLength(1);
    expect(audit.body.data[0]).toMatchObject({
      target: { type: 'webhook', id },
      actor: { type: 'key', key_id: org.adminKeyId },
      details: { url: 'https://hooks.example.com/…', event_types: ['key.revoked'] },
    });
    expect(JSON.stringify(audit.body)).not.toContain('whsec_');
  });

  it('changes, rotates and deletes an endpoint, each audited', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Hooks change');
    const created = await client.post(base(org.orgId), { key: org.adminKey, body: valid });
    const path = `${base(org.orgId)}/${created.body.webhook.id}`;
    // Enabling an enabled endpoint changes nothing (its failing spell is kept).
    await sql`update webhook_endpoints set failing_since = now() where id = ${created.body.webhook.id as string}`.execute(
      app().kt.database.db,
    );
    const same = await client.patch(path, { key: org.adminKey, body: { enabled: true } });
    expect(same.body.failing_since).not.toBeNull();
    const patched = await client.patch(path, {
      key: org.adminKey,
      body: { url: 'https://HOOKS.example.com:443/new?token=s3cret', enabled: false },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      url: 'https://hooks.example.com/new?token=s3cret',
      enabled: false,
      disabled_reason: 'disabled by an admin',
    });
    const rotated = await client.post(`${path}/rotate-secret`, { key: org.adminKey });
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(created.body.secret);
    expect(Date.parse(rotated.body.previous_secret_expires_at) - Date.now()).toBeGreaterThan(
      23 * 3_600_000,
    );
    expect((await client.delete(path, { key: org.adminKey })).status).toBe(204);
    expectProblem(await client.get(path, { key: org.adminKey }), 404, 'not_found');
    expectProblem(await client.delete(path, { key: org.adminKey }), 404, 'not_found');
    const audit = await client.get(`/api/orgs/${org.orgId}/audit-events`, { key: org.adminKey });
    const actions = (audit.body.data as { action: string }[]).map((e) => e.action);
    expect(actions.slice(0, 5)).toEqual([
      'webhook.deleted',
      'webhook.secret_rotated',
      'webhook.updated',
      'webhook.updated',
      'webhook.created',
    ]);
    const updated = (audit.body.data as { action: string; details: unknown }[])[2];
    expect(updated?.details).toEqual({
      changes: {
        // Paths and query strings (often the receiver's own token) stay out of the audit trail.
        url: {
          from: 'https://hooks.example.com/…',
          to: 'https://hooks.example.com/…?…',
          from_fingerprint: expect.stringMatching(/^[0-9a-f]{8}$/),
          to_fingerprint: expect.stringMatching(/^[0-9a-f]{8}$/),
        },
        enabled: { from: true, to: false },
      },
    });
    expect(JSON.stringify(audit.body)).not.toContain('whsec_');
    expect(JSON.stringify(audit.body)).not.toContain('s3cret');
  });

  it('refuses URLs it must not call (SSRF) and malformed bodies with 400, storing nothing', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Hooks bad');
    const urls = [
      'http://hooks.example.com/', // plain http off loopback
      'ftp://hooks.example.com/',
      'https://127.0.0.1/', // loopback without the setting
      'https://localhost:8443/',
      'https://[::1]/',
      'https://10.0.0.5/', // private
      'https://192.168.1.1/',
      'https://169.254.169.254/latest/meta-data', // link-local (cloud metadata)
      'https://[fe80::1]/',
      'https://[::ffff:10.0.0.1]/', // IPv4-mapped private
      'https://100.64.0.1/', // carrier-grade NAT
      'https://0.0.0.0/',
      'https://user:pass@hooks.example.com/',
      'https://hooks.example.com/#frag',
      'https://[::7f00:1]/', // IPv4-compatible IPv6 of 127.0.0.1
      'not a url',
      '/relative',
    ];
    for (const url of urls) {
      const res = await client.post(base(org.orgId), {
        key: org.adminKey,
        body: { ...valid, url },
      });
      expectProblem(res, 400, 'validation_failed');
      expect(res.body.errors?.[0]?.path, url).toMatch(/url/);
    }
    const bodies: unknown[] = [
      {},
      { url: valid.url },
      { ...valid, event_types: [] },
      { ...valid, event_types: ['key.unknown'] },
      { ...valid, event_types: 'key.revoked' },
      { ...valid, secret: 'mine' },
      { ...valid, enabled: 'yes' },
      { ...valid, url: `https://a.example.com/${'x'.repeat(2100)}` },
      { ...valid, description: 'a\u0000b' },
      [valid],
    ];
    for (const body of bodies) {
      expectProblem(
        await client.post(base(org.orgId), { key: org.adminKey, body }),
        400,
        'validation_failed',
      );
    }
    const list = await client.get(base(org.orgId), { key: org.adminKey });
    expect(list.body.data).toEqual([]);
    // A private network the operator allowed is accepted.
    const allowed = await client.post(base(org.orgId), {
      key: org.adminKey,
      body: { ...valid, url: 'https://10.20.3.4/hook' },
    });
    expect(allowed.status).toBe(201);
    const created = allowed.body.webhook.id as string;
    for (const body of [{}, { url: 'https://10.0.0.5/' }, { event_types: [] }, { nope: 1 }]) {
      expectProblem(
        await client.patch(`${base(org.orgId)}/${created}`, { key: org.adminKey, body }),
        400,
        'validation_failed',
      );
    }
    const kept = await client.get(`${base(org.orgId)}/${created}`, { key: org.adminKey });
    expect(kept.body.url).toBe('https://10.20.3.4/hook');
  });

  it('needs org:admin, hides other orgs, and limits endpoints per org', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Hooks scope');
    const other = await createOrg(client, 'Hooks other');
    const writer = await createKey(client, org, { scopes: ['keys:write', 'keys:read'] });
    expectProblem(
      await client.post(base(org.orgId), { key: writer.key, body: valid }),
      403,
      'insufficient_scope',
    );
    expectProblem(
      await client.get(base(org.orgId), { key: writer.key }),
      403,
      'insufficient_scope',
    );
    expectProblem(await client.get(base(org.orgId)), 401, 'unauthenticated');
    const mine = await client.post(base(org.orgId), { key: org.adminKey, body: valid });
    const id = mine.body.webhook.id as string;
    // Another org's admin: the endpoint does not exist for it.
    expectProblem(
      await client.get(`${base(other.orgId)}/${id}`, { key: other.adminKey }),
      404,
      'not_found',
    );
    expectProblem(
      await client.delete(`${base(other.orgId)}/${id}`, { key: other.adminKey }),
      404,
      'not_found',
    );
    expectProblem(
      await client.get(`${base(org.orgId)}/${id}`, { key: other.adminKey }),
      404,
      'not_found',
    );
    for (const bad of ['nope', '00000000-0000-0000-0000-000000000000']) {
      expectProblem(
        await client.get(`${base(org.orgId)}/${bad}/deliveries`, { key: org.adminKey }),
        404,
        'not_found',
      );
      expectProblem(
        await client.post(`${base(org.orgId)}/${id}/deliveries/${bad}/resend`, {
          key: org.adminKey,
        }),
        404,
        'not_found',
      );
    }
    expectProblem(
      await client.get(`${base(org.orgId)}/${id}/deliveries?limit=0`, { key: org.adminKey }),
      400,
      'validation_failed',
    );
    expectProblem(
      await client.get(`${base(org.orgId)}/${id}/deliveries?cursor=zzz`, { key: org.adminKey }),
      400,
      'validation_failed',
    );
    await client.post(base(org.orgId), { key: org.adminKey, body: valid });
    await client.post(base(org.orgId), { key: org.adminKey, body: valid });
    const over = await client.post(base(org.orgId), { key: org.adminKey, body: valid });
    expectProblem(over, 422, 'unprocessable');
    expect(over.body.detail).toContain('3 webhook endpoints');
  });

  it('stores no message for an org without endpoints, nor for a change that rolled back', async () => {
    const { client, kt } = app();
    const org = await createOrg(client, 'Hooks none');
    const key = await createKey(client, org);
    await client.delete(`/api/orgs/${org.orgId}/api-keys/${key.id}`, { key: org.adminKey });
    const count = async () =>
      Number(
        (
          await sql<{ n: string }>`select count(*) as n from webhook_messages
            where org_id = ${org.orgId}`.execute(kt.database.db)
        ).rows[0]?.n,
      );
    expect(await count()).toBe(0);
    await client.post(base(org.orgId), {
      key: org.adminKey,
      body: { ...valid, event_types: ['key.created', 'key.updated'] },
    });
    // A scope the caller does not hold: the update fails inside its transaction.
    const limited = await createKey(client, org, { scopes: ['keys:write'] });
    const target = await createKey(client, org, { scopes: ['keys:read'] });
    const refused = await client.patch(`/api/orgs/${org.orgId}/api-keys/${target.id}`, {
      key: limited.key,
      body: { name: 'renamed' },
    });
    expect(refused.status).toBe(403);
    const { rows } = await sql<{ type: string }>`select type from webhook_messages
      where org_id = ${org.orgId} order by occurred_at`.execute(kt.database.db);
    expect(rows.map((r) => r.type)).toEqual(['key.created', 'key.created']);
  });

  it('prunes settled messages past 30 days with their deliveries, never one on its way', async () => {
    const { client, kt } = app();
    const db = kt.database.db;
    const org = await createOrg(client, 'Hooks prune');
    await client.post(base(org.orgId), {
      key: org.adminKey,
      body: { ...valid, event_types: ['key.created'] },
    });
    await createKey(client, org, { name: 'settled' });
    await createKey(client, org, { name: 'on its way' });
    const { rows } = await sql<{ id: string }>`select m.id from webhook_messages m
      where m.org_id = ${org.orgId} order by m.occurred_at`.execute(db);
    expect(rows).toHaveLength(2);
    const [settled, queued] = rows.map((r) => r.id);
    await sql`update webhook_messages set occurred_at = now() - interval '31 days'
      where org_id = ${org.orgId}`.execute(db);
    await sql`update webhook_deliveries set status = 'succeeded'
      where message_id = ${settled ?? ''}`.execute(db);
    const before = new Date(Date.now() - WEBHOOK_RETENTION_DAYS * 86_400_000);
    expect(await pruneWebhookMessages(db, before)).toBeGreaterThanOrEqual(1);
    const left = await sql<{ id: string; deliveries: number }>`select m.id,
        (select count(*)::int from webhook_deliveries d
          where d.org_id = m.org_id and d.message_id = m.id) as deliveries
      from webhook_messages m where m.org_id = ${org.orgId}`.execute(db);
    expect(left.rows).toEqual([{ id: queued, deliveries: 1 }]);
  });
});
