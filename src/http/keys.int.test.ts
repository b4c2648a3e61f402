import { beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { useTestApp } from '../testing/harness.ts';
import { TestClock } from '../testing/clock.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';

const clock = new TestClock();
const app = useTestApp({ clock, config: { maxKeysPerOrg: 1000 } });
const keysPath = (org: TestOrg) => `/api/orgs/${org.orgId}/api-keys`;

describe('key lifecycle', () => {
  let org: TestOrg;
  beforeAll(async () => {
    org = await createOrg(app().client, 'Lifecycle');
  });

  it('creates a key whose plaintext authenticates and whose resource has every field', async () => {
    const { client } = app();
    const created = await createKey(client, org, {
      name: 'billing',
      environment: 'test',
      scopes: ['keys:read', 'orders:read'],
    });
    expect(created.key.startsWith('sk_test_')).toBe(true);
    expect(Object.keys(created.body).sort()).toEqual(
      [
        'id',
        'org_id',
        'name',
        'environment',
        'prefix',
        'scopes',
        'status',
        'created_at',
        'expires_at',
        'revoked_at',
        'rotated_from_id',
        'last_used_at',
        'last_used_ip',
        'request_count',
        'allowed_ips',
        'rate_limits',
        'quota',
      ].sort(),
    );
    expect(created.body).toMatchObject({
      name: 'billing',
      environment: 'test',
      prefix: created.key.slice(0, 'sk_test_'.length + 8),
      scopes: ['keys:read', 'orders:read'],
      status: 'active',
      last_used_at: null,
      request_count: 0,
    });
    const read = await client.get(`${keysPath(org)}/${created.id}`, { key: created.key });
    expect(read.status).toBe(200);
    expect(read.body).toEqual(created.body);
  });

  it('stores only the HMAC of the key, never the plaintext', async () => {
    const { client, kt } = app();
    const created = await createKey(client, org);
    const row = await kt.database.db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(created.key);
    expect(row.key_hash).toHaveLength(32);
  });

  it('lists keys newest first with a cursor that walks every key once', async () => {
    const { client } = app();
    const pageOrg = await createOrg(client, 'Pages');
    const ids = [pageOrg.adminKeyId];
    for (let i = 0; i < 7; i++) ids.push((await createKey(client, pageOrg, { name: `k${i}` })).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `?limit=3&cursor=${cursor}` : '?limit=3';
      const page = await client.get(`${keysPath(pageOrg)}${query}`, { key: pageOrg.adminKey });
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(3);
      seen.push(...page.body.data.map((k: { id: string }) => k.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toHaveLength(ids.length);
    expect(new Set(seen)).toEqual(new Set(ids));
    const bad = await client.get(`${keysPath(pageOrg)}?cursor=garbage`, { key: pageOrg.adminKey });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('validation_failed');
  });

  it('filters the list by status', async () => {
    const { client } = app();
    const o = await createOrg(client, 'Statuses');
    const revoked = await createKey(client, o, { name: 'revoked' });
    await client.delete(`${keysPath(o)}/${revoked.id}`, { key: o.adminKey });
    const active = await client.get(`${keysPath(o)}?status=active`, { key: o.adminKey });
    expect(active.body.data.map((k: { id: string }) => k.id)).toEqual([o.adminKeyId]);
    const gone = await client.get(`${keysPath(o)}?status=revoked`, { key: o.adminKey });
    expect(gone.body.data.map((k: { id: string }) => k.id)).toEqual([revoked.id]);
  });

  it('patches name, scopes and expiry, and rejects environment with 400', async () => {
    const { client } = app();
    const k = await createKey(client, org, { scopes: ['keys:read'] });
    const expires = new Date(clock.now().getTime() + 3_600_000).toISOString();
    const patched = await client.patch(`${keysPath(org)}/${k.id}`, {
      key: org.adminKey,
      body: { name: 'renamed', scopes: ['usage:read'], expires_at: expires },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      name: 'renamed',
      scopes: ['usage:read'],
      expires_at: expires,
    });
    const env = await client.patch(`${keysPath(org)}/${k.id}`, {
      key: org.adminKey,
      body: { environment: 'test' },
    });
    expect(env.status).toBe(400);
    expect(env.body.code).toBe('validation_failed');
    const past = await client.patch(`${keysPath(org)}/${k.id}`, {
      key: org.adminKey,
      body: { expires_at: '2001-01-01T00:00:00Z' },
    });
    expect(past.status).toBe(400);
  });

  it('expires a key at expires_at', async () => {
    const { client } = app();
    const expires = new Date(clock.now().getTime() + 60_000).toISOString();
    const k = await createKey(client, org, { expires_at: expires });
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: k.key })).status).toBe(200);
    clock.advance(61_000);
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: k.key })).status).toBe(401);
    const read = await client.get(`${keysPath(org)}/${k.id}`, { key: org.adminKey });
    expect(read.body.status).toBe('expired');
  });

  it('revokes idempotently with a reason', async () => {
    const { client, kt } = app();
    const k = await createKey(client, org);
    const first = await client.delete(`${keysPath(org)}/${k.id}?reason=leaked%20in%20CI`, {
      key: org.adminKey,
    });
    expect(first.status).toBe(200);
    expect(first.body.api_key.status).toBe('revoked');
    const second = await client.delete(`${keysPath(org)}/${k.id}`, { key: org.adminKey });
    expect(second.status).toBe(200);
    expect(second.body.api_key.revoked_at).toBe(first.body.api_key.revoked_at);
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: k.key })).status).toBe(401);
    const { rows } = await sql<{ n: number; reason: string }>`
      select count(*)::int as n, max(details->>'reason') as reason from audit_events
      where target_id = ${k.id} and action = 'key.revoked'`.execute(kt.database.db);
    expect(rows[0]).toEqual({ n: 1, reason: 'leaked in CI' });
  });
});

describe('rotation', () => {
  let org: TestOrg;
  beforeAll(async () => {
    org = await createOrg(app().client, 'Rotation');
  });

  it('with a 60 s overlap keeps the old key working until then and reports its expires_at', async () => {
    const { client } = app();
    const old = await createKey(client, org, {
      name: 'svc',
      scopes: ['keys:read'],
      environment: 'test',
    });
    const warm = await client.get(`/api/orgs/${org.orgId}`, { key: old.key });
    expect(warm.status).toBe(200);
    const before = clock.now().getTime();
    const res = await client.post(`${keysPath(org)}/${old.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 60 },
    });
    expect(res.status).toBe(201);
    expect(res.body.api_key).toMatchObject({
      name: 'svc',
      scopes: ['keys:read'],
      environment: 'test',
      rotated_from_id: old.id,
    });
    expect(res.body.key).not.toBe(old.key);
    const expiresAt = Date.parse(res.body.previous.expires_at);
    expect(expiresAt - before).toBeGreaterThanOrEqual(59_000);
    expect(expiresAt - before).toBeLessThanOrEqual(61_000);
    expect(res.body.previous.status).toBe('active');
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: old.key })).status).toBe(200);
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: res.body.key })).status).toBe(200);
    const seen = await client.get(`${keysPath(org)}/${old.id}`, { key: res.body.key });
    expect(seen.body.expires_at).toBe(res.body.previous.expires_at);
    clock.advance(61_000);
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: old.key })).status).toBe(401);
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: res.body.key })).status).toBe(200);
  });

  it('with overlap 0 rejects the old key at once, even from a warm cache', async () => {
    const { client } = app();
    const old = await createKey(client, org, { name: 'svc0' });
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: old.key })).status).toBe(200);
    const res = await client.post(`${keysPath(org)}/${old.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 0 },
    });
    expect(res.status).toBe(201);
    expect(res.body.previous.status).toBe('revoked');
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: old.key })).status).toBe(401);
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: res.body.key })).status).toBe(200);
  });

  it('refuses to rotate a revoked key and validates overlap_seconds', async () => {
    const { client } = app();
    const k = await createKey(client, org);
    const tooLong = await client.post(`${keysPath(org)}/${k.id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 31 * 86400 },
    });
    expect(tooLong.status).toBe(400);
    await client.delete(`${keysPath(org)}/${k.id}`, { key: org.adminKey });
    const res = await client.post(`${keysPath(org)}/${k.id}/rotate`, {
      key: org.adminKey,
      body: {},
    });
    expect(res.status).toBe(422);
  });
});

describe('privilege escalation', () => {
  it('returns 403 when granting a scope the caller does not hold', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Escalation');
    const writer = await createKey(client, org, { scopes: ['keys:write', 'keys:read'] });
    const res = await client.post(keysPath(org), {
      key: writer.key,
      body: { name: 'sneaky', scopes: ['org:admin'] },
    });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('insufficient_scope');
    const ok = await client.post(keysPath(org), {
      key: writer.key,
      body: { name: 'fine', scopes: ['keys:read'] },
    });
    expect(ok.status).toBe(201);
    const patch = await client.patch(`${keysPath(org)}/${ok.body.api_key.id}`, {
      key: writer.key,
      body: { scopes: ['audit:read'] },
    });
    expect(patch.status).toBe(403);
  });

  it('returns 403 when rotating a key with more privileges than the caller', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Escalation2');
    const writer = await createKey(client, org, { scopes: ['keys:write'] });
    const res = await client.post(`${keysPath(org)}/${org.adminKeyId}/rotate`, {
      key: writer.key,
      body: {},
    });
    expect(res.status).toBe(403);
    expect((await client.get(`/api/orgs/${org.orgId}`, { key: org.adminKey })).status).toBe(200);
  });
});

describe('per-org key limit', () => {
  it('rejects the 1001st active key with 422 key_limit_reached', async () => {
    const { client, kt } = app();
    const org = await createOrg(client, 'Limits');
    // 998 more rows straight into the table: 1 admin + 998 + 1 through the API = 1000.
    await sql`
      insert into api_keys (id, org_id, name, environment, prefix, key_hash, scopes)
      select gen_random_uuid(), ${org.orgId}, 'bulk ' || i, 'live', 'sk_live_bulk' || i,
             decode(md5(${org.orgId} || i::text) || md5(i::text || ${org.orgId}), 'hex'), '{}'
      from generate_series(1, 998) as i`.execute(kt.database.db);
    const thousandth = await client.post(keysPath(org), {
      key: org.adminKey,
      body: { name: 'k1000' },
    });
    expect(thousandth.status).toBe(201);
    const over = await client.post(keysPath(org), { key: org.adminKey, body: { name: 'k1001' } });
    expect(over.status).toBe(422);
    expect(over.body.code).toBe('key_limit_reached');
    await client.delete(`${keysPath(org)}/${thousandth.body.api_key.id}`, { key: org.adminKey });
    const again = await client.post(keysPath(org), { key: org.adminKey, body: { name: 'k1000b' } });
    expect(again.status).toBe(201);
  });
});
