import { beforeAll, describe, expect, it } from 'vitest';
import { useTestApp } from '../testing/harness.ts';
import { createKey, createOrg, type TestKey, type TestOrg } from '../testing/factories.ts';

const app = useTestApp();

/** Every org-scoped endpoint of this API, with the scope it needs (none: any key of the org). */
function endpoints(orgId: string, keyId: string) {
  const base = `/api/orgs/${orgId}/api-keys`;
  return [
    { method: 'GET', path: `/api/orgs/${orgId}`, scope: null, body: undefined },
    { method: 'POST', path: base, scope: 'keys:write', body: { name: 'x' } },
    { method: 'GET', path: base, scope: 'keys:read', body: undefined },
    { method: 'GET', path: `${base}/${keyId}`, scope: 'keys:read', body: undefined },
    { method: 'PATCH', path: `${base}/${keyId}`, scope: 'keys:write', body: { name: 'y' } },
    { method: 'POST', path: `${base}/${keyId}/rotate`, scope: 'keys:write', body: {} },
    { method: 'DELETE', path: `${base}/${keyId}`, scope: 'keys:write', body: undefined },
    { method: 'GET', path: `${base}/usage`, scope: 'usage:read', body: undefined },
    { method: 'GET', path: `${base}/${keyId}/usage`, scope: 'usage:read', body: undefined },
    {
      method: 'GET',
      path: `/api/orgs/${orgId}/usage-events`,
      scope: 'events:read',
      body: undefined,
    },
    {
      method: 'POST',
      path: `/api/orgs/${orgId}/usage-events`,
      scope: 'events:write',
      body: {
        events: [
          {
            key_id: keyId,
            occurred_at: new Date().toISOString(),
            method: 'GET',
            route: '/x',
            status: 200,
            latency_ms: 1,
          },
        ],
      },
    },
    {
      method: 'GET',
      path: `/api/orgs/${orgId}/audit-events`,
      scope: 'audit:read',
      body: undefined,
    },
  ] as const;
}

describe('access control on org-scoped endpoints', () => {
  let acme: TestOrg;
  let other: TestOrg;
  let target: TestKey;
  let noScopes: TestKey;

  beforeAll(async () => {
    const { client } = app();
    acme = await createOrg(client, 'Acme');
    other = await createOrg(client, 'Other');
    target = await createKey(client, acme, { name: 'target' });
    noScopes = await createKey(client, acme, { name: 'no scopes', scopes: [] });
  });

  it('returns 404 for every endpoint called with another org’s admin key', async () => {
    for (const e of endpoints(acme.orgId, target.id)) {
      const res = await app().client.request(e.method, e.path, {
        key: other.adminKey,
        body: e.body,
      });
      expect(res.status, `${e.method} ${e.path}`).toBe(404);
      expect(res.body.code).toBe('not_found');
    }
  });

  it('returns 403 insufficient_scope for a key of the org lacking the scope', async () => {
    for (const e of endpoints(acme.orgId, target.id).filter((x) => x.scope !== null)) {
      const res = await app().client.request(e.method, e.path, { key: noScopes.key, body: e.body });
      expect(res.status, `${e.method} ${e.path}`).toBe(403);
      expect(res.body.code).toBe('insufficient_scope');
      expect(res.headers.get('www-authenticate')).toContain('insufficient_scope');
    }
  });

  it('returns 401 unauthenticated without a key', async () => {
    for (const e of endpoints(acme.orgId, target.id)) {
      const res = await app().client.request(e.method, e.path, { body: e.body });
      expect(res.status, `${e.method} ${e.path}`).toBe(401);
      expect(res.body.code).toBe('unauthenticated');
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
  });

  it('lets a key with exactly the needed scope through', async () => {
    const { client } = app();
    const reader = await createKey(client, acme, { scopes: ['keys:read'] });
    const res = await client.get(`/api/orgs/${acme.orgId}/api-keys/${target.id}`, {
      key: reader.key,
    });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(target.id);
    const org = await client.get(`/api/orgs/${acme.orgId}`, { key: noScopes.key });
    expect(org.status).toBe(200);
    expect(org.body.name).toBe('Acme');
  });

  it('treats a key id of another org as not found even with the right org in the path', async () => {
    const { client } = app();
    const foreign = await createKey(client, other, { name: 'foreign' });
    const res = await client.get(`/api/orgs/${acme.orgId}/api-keys/${foreign.id}`, {
      key: acme.adminKey,
    });
    expect(res.status).toBe(404);
    const revoke = await client.delete(`/api/orgs/${acme.orgId}/api-keys/${foreign.id}`, {
      key: acme.adminKey,
    });
    expect(revoke.status).toBe(404);
  });

  it('answers the same 401 for missing, malformed, unknown, expired and revoked keys', async () => {
    const { client } = app();
    const revoked = await createKey(client, acme, { name: 'to revoke' });
    await client.delete(`/api/orgs/${acme.orgId}/api-keys/${revoked.id}`, { key: acme.adminKey });
    const unknown = target.key.replace('sk_live_', 'sk_test_');
    const bodies = [];
    for (const key of [undefined, 'sk_live_nope', unknown, revoked.key]) {
      const res = await client.get(`/api/orgs/${acme.orgId}`, { key });
      expect(res.status).toBe(401);
      bodies.push({ code: res.body.code, title: res.body.title });
    }
    expect(new Set(bodies.map((b) => JSON.stringify(b))).size).toBe(1);
  });
});

describe('auditor keys', () => {
  it('read raw events and the audit trail, and nothing else', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Audited org');
    const auditor = await createKey(client, org, {
      name: 'auditor',
      scopes: ['events:read', 'audit:read'],
    });
    const events = await client.get(`/api/orgs/${org.orgId}/usage-events`, { key: auditor.key });
    expect(events.status).toBe(200);
    expect(events.body).toEqual({ data: [], next_cursor: null });
    const audit = await client.get(`/api/orgs/${org.orgId}/audit-events?limit=1`, {
      key: auditor.key,
    });
    expect(audit.status).toBe(200);
    expect(audit.body.data[0]).toMatchObject({
      action: 'key.created',
      actor: { type: 'key', key_id: org.adminKeyId },
      target: { type: 'api_key', id: auditor.id },
    });
    expect(audit.body.next_cursor).not.toBeNull();
    const older = await client.get(
      `/api/orgs/${org.orgId}/audit-events?cursor=${audit.body.next_cursor}`,
      {
        key: auditor.key,
      },
    );
    expect(older.body.data.map((e: { target: { id: string } }) => e.target.id)).toEqual([
      org.adminKeyId,
    ]);
    const byKey = await client.get(
      `/api/orgs/${org.orgId}/audit-events?key_id=${auditor.id}&action=key.created`,
      {
        key: auditor.key,
      },
    );
    expect(byKey.body.data).toHaveLength(1);
    for (const path of [
      '/api-keys',
      '/api-keys/usage',
      `/api-keys/${auditor.id}`,
      `/api-keys/${auditor.id}/usage`,
    ]) {
      expect(
        (await client.get(`/api/orgs/${org.orgId}${path}`, { key: auditor.key })).status,
        path,
      ).toBe(403);
    }
    const create = await client.post(`/api/orgs/${org.orgId}/api-keys`, {
      key: auditor.key,
      body: { name: 'x' },
    });
    expect(create.status).toBe(403);
  });
});
