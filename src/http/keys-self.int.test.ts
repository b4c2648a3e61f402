import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { generateKey } from '../keys/key-format.ts';
import { TestClock } from '../testing/clock.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { useTestApp, waitFor } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';

const clock = new TestClock();
const app = useTestApp({ clock });
const self = (key: string | undefined, headers?: Record<string, string>) =>
  app().client.get('/api/keys/self', { key, ...(headers && { headers }) });

describe('GET /api/keys/self', () => {
  let org: TestOrg;
  beforeAll(async () => {
    org = await createOrg(app().client, 'Self');
  });

  it('returns the calling key’s own identity, not its creator’s', async () => {
    const k = await createKey(app().client, org, {
      name: 'orders service',
      environment: 'test',
      scopes: ['orders:read', 'keys:read'],
    });
    const res = await self(k.key);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(res.body).toEqual({
      key_id: k.id,
      org_id: org.orgId,
      name: 'orders service',
      environment: 'test',
      scopes: ['orders:read', 'keys:read'],
      expires_at: null,
    });
  });

  it('answers the org admin key with its org:admin scope and live environment', async () => {
    const res = await self(org.adminKey);
    expect(res.body).toMatchObject({
      key_id: org.adminKeyId,
      org_id: org.orgId,
      environment: 'live',
      scopes: ['org:admin'],
    });
  });

  it('works for a key with no scopes at all, through X-API-Key too', async () => {
    const k = await createKey(app().client, org, { name: 'bare', scopes: [] });
    const res = await self(undefined, { 'x-api-key': k.key });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ key_id: k.id, name: 'bare', scopes: [] });
  });

  it('returns expires_at as ISO-8601 when the key expires', async () => {
    const expiresAt = new Date(clock.now().getTime() + 86_400_000).toISOString();
    const k = await createKey(app().client, org, { expires_at: expiresAt });
    const res = await self(k.key);
    expect(res.status).toBe(200);
    expect(res.body.expires_at).toBe(expiresAt);
  });

  it('reflects a rename at once', async () => {
    const k = await createKey(app().client, org, { name: 'before' });
    expect((await self(k.key)).body.name).toBe('before');
    const patched = await app().client.patch(`/api/orgs/${org.orgId}/api-keys/${k.id}`, {
      key: org.adminKey,
      body: { name: 'after' },
    });
    expect(patched.status).toBe(200);
    expect((await self(k.key)).body.name).toBe('after');
  });

  it('answers 401 unauthenticated for a missing, malformed or unknown key', async () => {
    const missing = await self(undefined);
    expectProblem(missing, 401, 'unauthenticated');
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    for (const key of ['garbage', `sk_live_${'a'.repeat(40)}`, generateKey('live').plaintext]) {
      const res = await self(key);
      expectProblem(res, 401, 'unauthenticated');
      expect(res.headers.get('www-authenticate')).toContain('invalid_token');
    }
  });

  it('answers 401 for a revoked key', async () => {
    const k = await createKey(app().client, org);
    expect((await self(k.key)).status).toBe(200);
    const revoked = await app().client.delete(`/api/orgs/${org.orgId}/api-keys/${k.id}`, {
      key: org.adminKey,
    });
    expect(revoked.status).toBe(200);
    expectProblem(await self(k.key), 401, 'unauthenticated');
  });

  it('answers 401 for an expired key, the same as for an unknown one', async () => {
    const k = await createKey(app().client, org, {
      expires_at: new Date(clock.now().getTime() + 5_000).toISOString(),
    });
    expect((await self(k.key)).status).toBe(200);
    clock.advance(6_000);
    const expired = await self(k.key);
    const unknown = await self(generateKey('live').plaintext);
    expectProblem(expired, 401, 'unauthenticated');
    expect(expired.body.detail).toBe(unknown.body.detail);
  });

  it('refuses a key revoked behind the auth cache’s back (a missed invalidation)', async () => {
    const k = await createKey(app().client, org);
    expect((await self(k.key)).status).toBe(200); // now cached as active
    // Straight SQL: no NOTIFY, so only the route's own read can see the revocation.
    await sql`update api_keys set revoked_at = now() where id = ${k.id}`.execute(
      app().kt.database.db,
    );
    const res = await self(k.key);
    expectProblem(res, 401, 'unauthenticated');
    expect(res.headers.get('www-authenticate')).toContain('invalid_token');
  });

  it('is documented in /openapi.json', async () => {
    const res = await app().client.get('/openapi.json');
    const op = res.body.paths['/api/keys/self'].get;
    // On every keyed operation: 403, the key's allowed IPs; 429, the per-address limit on
    // uncached keys and the key's rate limits; 503, Postgres.
    expect(Object.keys(op.responses)).toEqual(['200', '401', '403', '429', '503']);
    const ref: string = op.responses['200'].content['application/json'].schema.$ref;
    const schema = res.body.components.schemas[ref.split('/').pop() as string];
    expect(Object.keys(schema.properties)).toEqual([
      'key_id',
      'org_id',
      'name',
      'environment',
      'scopes',
      'expires_at',
    ]);
  });
});

describe('GET /api/keys/self usage', () => {
  let worker: Worker;
  beforeAll(async () => {
    worker = await startWorker(app().kt);
  });
  afterAll(async () => worker.stop());

  it('records the call as a usage event of the calling key', async () => {
    const org = await createOrg(app().client, 'Self usage');
    const k = await createKey(app().client, org, { scopes: [] });
    expect((await self(k.key)).status).toBe(200);
    const events = await waitFor(
      async () => {
        const { rows } = await sql<{ method: string; route: string; status: number }>`
          select method, route, status from api_key_usage_events
          where key_id = ${k.id}`.execute(app().kt.database.db);
        return rows.length > 0 && rows;
      },
      { timeoutMs: 10_000 },
    );
    expect(events).toEqual([{ method: 'GET', route: '/api/keys/self', status: 200 }]);
  });
});
