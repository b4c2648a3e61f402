import express from 'express';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { TestClient } from '../testing/client.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { generateKey } from '../keys/key-format.ts';
import { onCitus } from '../platform/db.ts';

const dbUrl = useTestDatabase();
let a: TestApp;
let b: TestApp;
let org: TestOrg;

beforeAll(async () => {
  // Two instances on one database, each with its own cache and LISTEN connection.
  a = await startTestApp(dbUrl());
  b = await startTestApp(dbUrl());
  org = await createOrg(a.client, 'Auth');
});
afterAll(async () => {
  await a.close();
  await b.close();
});

describe('requireKey', () => {
  it('rejects a malformed key without any database query', async () => {
    const valid = await createKey(a.client, org);
    const mistyped = `${valid.key.slice(0, -1)}${valid.key.endsWith('a') ? 'b' : 'a'}`;
    const before = a.kt.database.stats.count;
    for (const key of ['sk_live_short', mistyped, 'not a key at all', `${valid.key}x`]) {
      const res = await a.client.get('/v1/demo/orders/1', { key });
      expect(res.status).toBe(401);
    }
    expect(a.kt.database.stats.count - before).toBe(0);
    expect(a.kt.cache.stats.misses + a.kt.cache.stats.hits).toBeGreaterThanOrEqual(0);
  });

  it('serves repeated requests of one key from the cache', async () => {
    const k = await createKey(a.client, org);
    await a.client.get('/v1/demo/orders/1', { key: k.key });
    const before = a.kt.database.stats.count;
    for (let i = 0; i < 20; i++) {
      expect((await a.client.get('/v1/demo/orders/1', { key: k.key })).status).toBe(200);
    }
    expect(a.kt.database.stats.count - before).toBe(0);
  });

  it('looks an uncached key up in one statement on PostgreSQL, two on Citus (SPEC §12)', async () => {
    // Instance B asks once per pool whether it runs on Citus, at its first miss: done here.
    const first = await createKey(a.client, org);
    expect((await b.client.get('/v1/demo/orders/1', { key: first.key })).status).toBe(200);
    const k = await createKey(a.client, org);
    // Instance B has never seen the key: its first request is a cache miss.
    const before = b.kt.database.stats.count;
    expect((await b.client.get('/v1/demo/orders/1', { key: k.key })).status).toBe(200);
    const statements = b.kt.database.stats.count - before;
    expect(statements).toBe((await onCitus(b.kt.database.db)) ? 2 : 1);
  });

  it('accepts the key in X-API-Key as well as Authorization: Bearer', async () => {
    const k = await createKey(a.client, org);
    const res = await a.client.get('/v1/demo/orders/7', { headers: { 'x-api-key': k.key } });
    expect(res.status).toBe(200);
    expect(res.body.key_id).toBe(k.id);
  });

  it('refuses on instance B within 1 s a key revoked through instance A (warm cache)', async () => {
    const k = await createKey(a.client, org);
    expect((await b.client.get('/v1/demo/orders/1', { key: k.key })).status).toBe(200);
    expect((await b.client.get('/v1/demo/orders/1', { key: k.key })).status).toBe(200);
    const revokedAt = Date.now();
    const res = await a.client.delete(`/api/orgs/${org.orgId}/api-keys/${k.id}`, {
      key: org.adminKey,
    });
    expect(res.status).toBe(200);
    expect((await a.client.get('/v1/demo/orders/1', { key: k.key })).status).toBe(401);
    await waitFor(
      async () => (await b.client.get('/v1/demo/orders/1', { key: k.key })).status === 401,
      {
        timeoutMs: 1_000,
      },
    );
    expect(Date.now() - revokedAt).toBeLessThan(1_000);
  });

  it('applies a scope change on the other instance within 1 s', async () => {
    const k = await createKey(a.client, org, { scopes: ['keys:read'] });
    const path = `/api/orgs/${org.orgId}/api-keys`;
    expect((await b.client.get(path, { key: k.key })).status).toBe(200);
    await a.client.patch(`${path}/${k.id}`, { key: org.adminKey, body: { scopes: [] } });
    await waitFor(async () => (await b.client.get(path, { key: k.key })).status === 403, {
      timeoutMs: 1_000,
    });
  });

  it('caches unknown keys only briefly and never lets them in', async () => {
    // An invalidation arriving while a lookup is in flight (a late notification of the key
    // changes above) rightly discards its answer: a fresh unknown key is tried a few times.
    const queriesOfSecondTry = async () => {
      const unknown = generateKey('live').plaintext;
      expect((await a.client.get('/v1/demo/orders/1', { key: unknown })).status).toBe(401);
      const before = a.kt.database.stats.count;
      expect((await a.client.get('/v1/demo/orders/1', { key: unknown })).status).toBe(401);
      return a.kt.database.stats.count - before;
    };
    const tries = [await queriesOfSecondTry()];
    while (tries.at(-1) !== 0 && tries.length < 3) tries.push(await queriesOfSecondTry());
    expect(tries.at(-1)).toBe(0);
  });
});

describe('requireKey in another Express app (library use)', () => {
  it('protects routes of any app, sets req.apiKey and answers problem+json itself', async () => {
    const reader = await createKey(a.client, org, { scopes: ['orders:read'] });
    const plain = await createKey(a.client, org, { scopes: [] });
    const host = express();
    host.get('/orders', a.kt.requireKey({ scopes: ['orders:read'] }), (req, res) => {
      res.json({ key: req.apiKey?.id, org: req.apiKey?.orgId, scopes: req.apiKey?.scopes });
    });
    const server = createServer(host);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new TestClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const ok = await client.get('/orders', { key: reader.key });
      expect(ok.status).toBe(200);
      expect(ok.body).toEqual({ key: reader.id, org: org.orgId, scopes: ['orders:read'] });
      const denied = await client.get('/orders', { key: plain.key });
      expect(denied.status).toBe(403);
      expect(denied.headers.get('content-type')).toContain('application/problem+json');
      expect(denied.body.code).toBe('insufficient_scope');
      const anonymous = await client.get('/orders');
      expect(anonymous.status).toBe(401);
      expect(anonymous.body.request_id).toBeTruthy();
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
