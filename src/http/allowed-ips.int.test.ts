import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startWorker, type Worker } from '../../workers/main.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { TestClient } from '../testing/client.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { TRACKING } from '../testing/instances.ts';

// SPEC §11: a key's allowed IPs. `direct` listens on '::' (its 127.0.0.1 client arrives as
// ::ffff:127.0.0.1, its [::1] client as ::1) and trusts no proxy; `proxied` trusts
// X-Forwarded-For (KEYTRAIL_TRUST_PROXY=true); `other` is a second instance on the database.
const dbUrl = useTestDatabase();
let direct: TestApp;
let proxied: TestApp;
let other: TestApp;
let v6: TestClient;
let worker: Worker;
let org: TestOrg;
let otherOrg: TestOrg;

beforeAll(async () => {
  direct = await startTestApp(dbUrl(), { listenHost: '::', config: { usage: TRACKING } });
  proxied = await startTestApp(dbUrl(), { config: { trustProxy: true, usage: TRACKING } });
  other = await startTestApp(dbUrl());
  v6 = new TestClient(direct.baseUrl.replace('127.0.0.1', '[::1]'));
  worker = await startWorker(direct.kt);
  org = await createOrg(direct.client, 'Allowed IPs');
  otherOrg = await createOrg(direct.client, 'Elsewhere');
});
afterAll(async () => {
  await worker.stop();
  for (const app of [direct, proxied, other]) await app.close();
});

const keysPath = () => `/api/orgs/${org.orgId}/api-keys`;
const demo = (client: TestClient, key: string, from?: string) =>
  client.get('/v1/demo/orders/1', {
    key,
    ...(from !== undefined && { headers: { 'x-forwarded-for': from } }),
  });

describe('allowed_ips on the key', () => {
  it('stores canonical networks, shows them on every ApiKey response, and rotate copies them', async () => {
    const res = await direct.client.post(keysPath(), {
      key: org.adminKey,
      body: { name: 'office', allowed_ips: ['203.0.113.0/24', ' 192.0.2.7 ', '2001:DB8::/32'] },
    });
    expect(res.status).toBe(201);
    const ips = ['203.0.113.0/24', '192.0.2.7/32', '2001:db8::/32'];
    expect(res.body.api_key.allowed_ips).toEqual(ips);
    const id = res.body.api_key.id as string;
    const got = await direct.client.get(`${keysPath()}/${id}`, { key: org.adminKey });
    expect(got.body.allowed_ips).toEqual(ips);
    const list = await direct.client.get(keysPath(), { key: org.adminKey });
    expect(list.body.data.find((k: { id: string }) => k.id === id).allowed_ips).toEqual(ips);
    const rotated = await direct.client.post(`${keysPath()}/${id}/rotate`, {
      key: org.adminKey,
      body: { overlap_seconds: 60 },
    });
    expect(rotated.body.api_key.allowed_ips).toEqual(ips);
    expect(rotated.body.previous.allowed_ips).toEqual(ips);
    const plain = await createKey(direct.client, org);
    expect(plain.body.allowed_ips).toEqual([]);
  });

  it('refuses bad entries with a 400 naming the entry, and stores nothing', async () => {
    const cases: [unknown, string][] = [
      [['10.0.0.1/8'], 'body.allowed_ips.0'],
      [['192.0.2.0/24', 'not-an-ip'], 'body.allowed_ips.1'],
      [['010.0.0.1'], 'body.allowed_ips.0'],
      [['::ffff:10.0.0.0/104'], 'body.allowed_ips.0'],
      [['fe80::1%eth0'], 'body.allowed_ips.0'],
      [['10.0.0.0/33'], 'body.allowed_ips.0'],
      [[7], 'body.allowed_ips.0'],
      ['10.0.0.0/8', 'body.allowed_ips'],
      [Array.from({ length: 101 }, (_, i) => `10.0.${i}.0/24`), 'body.allowed_ips'],
    ];
    const before = (await direct.client.get(`${keysPath()}?limit=500`, { key: org.adminKey })).body
      .data.length;
    for (const [allowed, path] of cases) {
      const res = await direct.client.post(keysPath(), {
        key: org.adminKey,
        body: { name: 'bad', allowed_ips: allowed },
      });
      expect(res.status, JSON.stringify(allowed).slice(0, 40)).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(path);
    }
    const host = await direct.client.post(keysPath(), {
      key: org.adminKey,
      body: { name: 'bad', allowed_ips: ['10.0.0.1/8'] },
    });
    expect(host.body.detail).toContain('did you mean 10.0.0.0/8');
    const after = (await direct.client.get(`${keysPath()}?limit=500`, { key: org.adminKey })).body
      .data.length;
    expect(after).toBe(before);
  });

  it('is changed by PATCH, audited with before and after, and [] allows any address again', async () => {
    const k = await createKey(direct.client, org);
    const patch = (allowed: string[]) =>
      direct.client.patch(`${keysPath()}/${k.id}`, {
        key: org.adminKey,
        body: { allowed_ips: allowed },
      });
    expect((await patch(['198.51.100.0/24'])).body.allowed_ips).toEqual(['198.51.100.0/24']);
    expect((await demo(direct.client, k.key)).status).toBe(403);
    expect((await patch([])).body.allowed_ips).toEqual([]);
    expect((await demo(direct.client, k.key)).status).toBe(200);
    const audit = await direct.client.get(
      `/api/orgs/${org.orgId}/audit-events?action=key.updated&key_id=${k.id}`,
      { key: org.adminKey },
    );
    const changes = audit.body.data.map(
      (e: { details: { changes: { allowed_ips?: unknown } } }) => e.details.changes.allowed_ips,
    );
    expect(changes).toContainEqual({ from: ['198.51.100.0/24'], to: [] });
    expect(changes).toContainEqual({ from: [], to: ['198.51.100.0/24'] });
  });
});

describe('requireKey with allowed_ips', () => {
  it('matches IPv4, IPv4-mapped and IPv6 client addresses without a trusted proxy', async () => {
    const v4 = await createKey(direct.client, org, { allowed_ips: ['127.0.0.0/8'] });
    const v6Only = await createKey(direct.client, org, { allowed_ips: ['::1/128'] });
    // The 127.0.0.1 client arrives as ::ffff:127.0.0.1: matched as IPv4.
    expect((await demo(direct.client, v4.key)).status).toBe(200);
    expect((await demo(v6, v4.key)).status).toBe(403);
    expect((await demo(v6, v6Only.key)).status).toBe(200);
    expect((await demo(direct.client, v6Only.key)).status).toBe(403);
    // X-Forwarded-For is not trusted here: it cannot buy an address.
    const office = await createKey(direct.client, org, { allowed_ips: ['203.0.113.0/24'] });
    const refused = await demo(direct.client, office.key, '203.0.113.9');
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ code: 'ip_not_allowed', status: 403 });
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    expect(refused.text).not.toContain('203.0.113');
  });

  it('uses the forwarded address behind a trusted proxy, IPv4, IPv6 and mapped', async () => {
    const k = await createKey(proxied.client, org, {
      allowed_ips: ['203.0.113.0/24', '2001:db8::/32'],
    });
    expect((await demo(proxied.client, k.key, '203.0.113.9')).status).toBe(200);
    expect((await demo(proxied.client, k.key, '::ffff:203.0.113.10')).status).toBe(200);
    expect((await demo(proxied.client, k.key, '2001:db8:1::5')).status).toBe(200);
    expect((await demo(proxied.client, k.key, '198.51.100.1')).status).toBe(403);
    expect((await demo(proxied.client, k.key, '2001:db9::1')).status).toBe(403);
    expect((await demo(proxied.client, k.key, 'garbage')).status).toBe(403);
    expect((await demo(proxied.client, k.key)).status).toBe(403);
  });

  it('refuses before the org and scope checks: 403 ip_not_allowed, not 404 or insufficient_scope', async () => {
    const k = await createKey(direct.client, org, {
      scopes: [],
      allowed_ips: ['192.0.2.0/24'],
    });
    const foreign = await direct.client.get(`/api/orgs/${otherOrg.orgId}/api-keys`, { key: k.key });
    expect(foreign.body.code).toBe('ip_not_allowed');
    const scoped = await direct.client.get(keysPath(), { key: k.key });
    expect(scoped.body.code).toBe('ip_not_allowed');
  });

  it('records refusals as ip_denied events: limited, never use', async () => {
    const k = await createKey(direct.client, org, { allowed_ips: ['127.0.0.1'] });
    expect((await demo(direct.client, k.key)).status).toBe(200);
    expect((await demo(v6, k.key)).status).toBe(403);
    expect((await demo(v6, k.key)).status).toBe(403);
    const totals = await waitFor(async () => {
      const row = await direct.kt.database.db
        .selectFrom('api_key_usage_totals')
        .selectAll()
        .where('key_id', '=', k.id)
        .executeTakeFirst();
      return row?.limited_count === 2 && row.request_count === 1 ? row : undefined;
    });
    expect(totals.denied_count).toBe(0);
    expect(totals.last_used_ip).toBe('127.0.0.1');
    const { rows } = await sql<{ outcome: string; ip: string; status: number }>`
      select outcome, host(ip) as ip, status from api_key_usage_events
      where key_id = ${k.id} and outcome <> 'success'`.execute(direct.kt.database.db);
    expect(rows).toEqual([
      { outcome: 'ip_denied', ip: '::1', status: 403 },
      { outcome: 'ip_denied', ip: '::1', status: 403 },
    ]);
  });

  it('applies a change on every instance within 1 s (warm caches)', async () => {
    const k = await createKey(direct.client, org);
    expect((await demo(other.client, k.key)).status).toBe(200);
    expect((await demo(other.client, k.key)).status).toBe(200);
    const changedAt = Date.now();
    await direct.client.patch(`${keysPath()}/${k.id}`, {
      key: org.adminKey,
      body: { allowed_ips: ['192.0.2.0/24'] },
    });
    await waitFor(async () => (await demo(other.client, k.key)).status === 403, {
      timeoutMs: 1_000,
    });
    expect(Date.now() - changedAt).toBeLessThan(1_000);
  });
});

describe('verify with ip', () => {
  const verify = async (body: Record<string, unknown>) => {
    const gateway = await createKey(direct.client, org, { scopes: ['keys:verify'] });
    return direct.client.post('/api/keys/verify', { key: gateway.key, body });
  };

  it('checks the caller address given as ip, fails closed without one, and records it', async () => {
    const k = await createKey(direct.client, org, {
      scopes: ['orders:read'],
      allowed_ips: ['203.0.113.0/24', '2001:db8::/32'],
    });
    for (const ip of ['203.0.113.5', '::ffff:203.0.113.6', '2001:db8::7']) {
      expect((await verify({ key: k.key, ip })).body, ip).toMatchObject({
        valid: true,
        code: 'VALID',
      });
    }
    for (const body of [{ key: k.key, ip: '198.51.100.7' }, { key: k.key }]) {
      const res = await verify(body);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED', key_id: k.id });
    }
    // The address is checked before the scopes, as requireKey does.
    const both = await verify({ key: k.key, ip: '198.51.100.7', scopes: ['orders:write'] });
    expect(both.body.code).toBe('IP_NOT_ALLOWED');
    const { rows } = await waitFor(async () => {
      const found = await sql<{ outcome: string; ip: string | null }>`
        select outcome, host(ip) as ip from api_key_usage_events where key_id = ${k.id}
        order by occurred_at, outcome`.execute(direct.kt.database.db);
      return found.rows.length === 6 ? found : undefined;
    });
    expect(rows.map((r) => r.ip).slice(0, 3)).toEqual([
      '203.0.113.5',
      '203.0.113.6',
      '2001:db8::7',
    ]);
    expect(rows.filter((r) => r.outcome === 'ip_denied').map((r) => r.ip)).toEqual([
      '198.51.100.7',
      '127.0.0.1',
      '198.51.100.7',
    ]);
  });

  it('answers VALID without ip for a key that has no allowed IPs, and 400 for a bad ip', async () => {
    const k = await createKey(direct.client, org);
    expect((await verify({ key: k.key })).body.code).toBe('VALID');
    for (const ip of ['fe80::1%eth0', '1.2.3', 'localhost', '']) {
      const res = await verify({ key: k.key, ip });
      expect(res.status, ip).toBe(400);
      expect(res.body.errors.map((e: { path: string }) => e.path)).toContain('body.ip');
    }
  });
});
