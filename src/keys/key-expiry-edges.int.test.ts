import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { useTestApp } from '../testing/harness.ts';
import { createKey, createOrg } from '../testing/factories.ts';
import { expectProblem } from '../testing/problem.ts';

const app = useTestApp({ config: { maxKeysPerOrg: 3 } });
const iso = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString();
/** The key's expiry passes (as if time went by): the API only accepts future expiries. */
const expire = (keyId: string) =>
  sql`update api_keys set expires_at = now() - interval '1 minute' where id = ${keyId}`.execute(
    app().kt.database.db,
  );

describe('expired keys', () => {
  it('are listed under status=expired only, and refused', async () => {
    const org = await createOrg(app().client, 'Expired list');
    const k = await createKey(app().client, org, { name: 'to expire' });
    const keys = `/api/orgs/${org.orgId}/api-keys`;
    await expire(k.id);
    const expired = await app().client.get(`${keys}?status=expired`, { key: org.adminKey });
    expect(expired.body.data.map((d: { id: string }) => d.id)).toEqual([k.id]);
    const active = await app().client.get(`${keys}?status=active`, { key: org.adminKey });
    expect(active.body.data.map((d: { id: string }) => d.id)).not.toContain(k.id);
    expect((await app().client.get('/v1/demo/orders/1', { key: k.key })).status).toBe(401);
  });

  it('cannot be brought back by a new expires_at when the org is at its active-key limit (422)', async () => {
    const org = await createOrg(app().client, 'Reactivate'); // the admin key is active key 1
    const other = await createKey(app().client, org);
    const sleeper = await createKey(app().client, org);
    const path = `/api/orgs/${org.orgId}/api-keys/${sleeper.id}`;
    await expire(sleeper.id);
    await createKey(app().client, org); // takes the freed slot
    const back = await app().client.patch(path, {
      key: org.adminKey,
      body: { expires_at: iso(86_400_000) },
    });
    expectProblem(back, 422, 'key_limit_reached');
    const still = await app().client.get(path, { key: org.adminKey });
    expect(still.body.status).toBe('expired');
    await app().client.delete(`/api/orgs/${org.orgId}/api-keys/${other.id}`, { key: org.adminKey });
    const revived = await app().client.patch(path, {
      key: org.adminKey,
      body: { expires_at: iso(86_400_000) },
    });
    expect(revived.status).toBe(200);
    expect(revived.body.status).toBe('active');
  });
});

describe('rotation overlap', () => {
  it('keeps the old key’s earlier expiry when it ends before the overlap would', async () => {
    const org = await createOrg(app().client, 'Rotate sooner');
    const expiresAt = iso(3_600_000);
    const k = await createKey(app().client, org, { expires_at: expiresAt });
    const res = await app().client.post(`/api/orgs/${org.orgId}/api-keys/${k.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 86_400 },
    });
    expect(res.status).toBe(201);
    expect(Date.parse(res.body.previous.expires_at)).toBe(Date.parse(expiresAt));
    expect(res.body.previous.status).toBe('active');
  });

  it('is bounded to 30 days for library callers too', async () => {
    const org = await createOrg(app().client, 'Rotate library');
    const k = await createKey(app().client, org);
    const caller = {
      id: org.adminKeyId,
      orgId: org.orgId,
      environment: 'live' as const,
      scopes: ['org:admin'],
    };
    await expect(app().kt.keys.rotate(caller, org.orgId, k.id, 31 * 86_400)).rejects.toMatchObject({
      code: 'validation_failed',
    });
    await expect(app().kt.keys.rotate(caller, org.orgId, k.id, -1)).rejects.toMatchObject({
      code: 'validation_failed',
    });
  });
});
