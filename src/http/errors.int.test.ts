import { beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, useTestApp, useTestDatabase } from '../testing/harness.ts';
import { createOrg, type TestOrg } from '../testing/factories.ts';
import { expectProblem } from '../testing/problem.ts';

const app = useTestApp();
const otherDb = useTestDatabase();

describe('errors are problem+json with stable codes', () => {
  let org: TestOrg;
  beforeAll(async () => {
    org = await createOrg(app().client, 'Errors');
  });
  const keys = () => `/api/orgs/${org.orgId}/api-keys`;

  it('rejects unknown JSON fields with 400 validation_failed naming the field', async () => {
    const res = await app().client.post(keys(), {
      key: org.adminKey,
      body: { name: 'x', colour: 'red' },
    });
    expectProblem(res, 400, 'validation_failed');
    expect(JSON.stringify(res.body.errors)).toContain('colour');
  });

  it('rejects invalid scopes, names and environments with 400 and field errors', async () => {
    const res = await app().client.post(keys(), {
      key: org.adminKey,
      body: { name: '', scopes: ['Bad Scope'], environment: 'prod' },
    });
    expectProblem(res, 400, 'validation_failed');
    const paths = res.body.errors.map((e: { path: string }) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining(['body.name', 'body.scopes.0', 'body.environment']),
    );
  });

  it('rejects malformed JSON with 400', async () => {
    const res = await app().client.post(keys(), {
      key: org.adminKey,
      rawBody: '{"name": ',
      headers: { 'content-type': 'application/json' },
    });
    expectProblem(res, 400, 'validation_failed');
  });

  it('rejects bodies over 1 MiB with 413 payload_too_large and stores nothing', async () => {
    const before = await app().client.get(keys(), { key: org.adminKey });
    const res = await app().client.post(keys(), {
      key: org.adminKey,
      rawBody: JSON.stringify({ name: 'big', pad: 'x'.repeat(1024 * 1024) }),
      headers: { 'content-type': 'application/json' },
    });
    expectProblem(res, 413, 'payload_too_large');
    const after = await app().client.get(keys(), { key: org.adminKey });
    expect(after.body.data).toHaveLength(before.body.data.length);
  });

  it('answers unknown routes and unknown keys with 404 not_found', async () => {
    expectProblem(await app().client.get('/nope'), 404, 'not_found');
    const res = await app().client.get(`${keys()}/not-a-uuid`, { key: org.adminKey });
    expectProblem(res, 404, 'not_found');
    const missing = await app().client.get(`${keys()}/00000000-0000-4000-8000-000000000000`, {
      key: org.adminKey,
    });
    expectProblem(missing, 404, 'not_found');
  });

  it('routes by first path segment as Express would: any letter case, nothing from the prototype', async () => {
    const self = await app().client.get('/API/Keys/self', { key: org.adminKey });
    expect(self.status).toBe(200);
    expect((await app().client.get('/HEALTHZ')).status).toBe(200);
    // The second level (api/orgs, api/keys) too, with a trailing slash as Express allows.
    expect((await app().client.get(`/Api/ORGS/${org.orgId}/`, { key: org.adminKey })).status).toBe(
      200,
    );
    const paths = ['/__proto__/x', '/constructor', '/toString', '/', '/v2/demo/orders/1'];
    paths.push('/api', '/api/', '/api/__proto__', '/api/constructor/x', '/api/keys');
    for (const path of paths)
      expectProblem(await app().client.get(path, { key: org.adminKey }), 404, 'not_found');
  });

  it('never echoes the path of an unknown route: it can hold a key', async () => {
    const secret = org.adminKey;
    for (const path of [`/v1/${secret}`, `/${encodeURIComponent(secret)}/x`, `/x?key=${secret}`]) {
      const res = await app().client.get(path);
      expectProblem(res, 404, 'not_found');
      expect(res.text).not.toContain(secret);
      expect(res.text).not.toContain(secret.slice(8, 24));
    }
  });

  it('rejects limit outside 1–500 and unknown query parameters', async () => {
    expectProblem(
      await app().client.get(`${keys()}?limit=0`, { key: org.adminKey }),
      400,
      'validation_failed',
    );
    expectProblem(
      await app().client.get(`${keys()}?limit=501`, { key: org.adminKey }),
      400,
      'validation_failed',
    );
    expectProblem(
      await app().client.get(`${keys()}?colour=red`, { key: org.adminKey }),
      400,
      'validation_failed',
    );
  });

  it('echoes a sane X-Request-Id and replaces an unsafe one', async () => {
    const res = await app().client.get('/nope', { headers: { 'x-request-id': 'abc-123' } });
    expect(res.body.request_id).toBe('abc-123');
    const unsafe = await app().client.get('/nope', { headers: { 'x-request-id': 'a b<script>' } });
    expect(unsafe.body.request_id).not.toContain('script');
  });
});

describe('operator endpoint', () => {
  it('returns 401 for a wrong operator token and 400 for a bad name', async () => {
    const wrong = await app().client.post('/api/orgs', {
      key: 'wrong-token-wrong-token',
      body: { name: 'x' },
    });
    expectProblem(wrong, 401, 'unauthenticated');
    const bad = await app().client.post('/api/orgs', {
      key: 'test-operator-token-0123456789',
      body: { name: 'x', extra: 1 },
    });
    expectProblem(bad, 400, 'validation_failed');
  });

  it('does not exist (404) when KEYTRAIL_OPERATOR_TOKEN is unset', async () => {
    const bare = await startTestApp(otherDb(), { config: { operatorToken: undefined } });
    try {
      const res = await bare.client.post('/api/orgs', {
        key: 'anything-at-all-here',
        body: { name: 'x' },
      });
      expectProblem(res, 404, 'not_found');
    } finally {
      await bare.close();
    }
  });
});

describe('system endpoints', () => {
  it('reports liveness and readiness', async () => {
    expect((await app().client.get('/healthz')).body).toEqual({ status: 'ok' });
    const ready = await app().client.get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({
      status: 'ok',
      checks: { database: 'ok', migrations: 'ok', queue: 'ok', key_changes: 'ok' },
    });
  });

  it('serves an OpenAPI 3.1 document generated from the request schemas', async () => {
    const res = await app().client.get('/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    const create = res.body.paths['/api/orgs/{orgId}/api-keys'].post;
    const schema = create.requestBody.content['application/json'].schema;
    const resolved = schema.$ref
      ? res.body.components.schemas[schema.$ref.split('/').pop()]
      : schema;
    expect(resolved.additionalProperties).toBe(false);
    expect(Object.keys(resolved.properties)).toEqual([
      'name',
      'environment',
      'scopes',
      'expires_at',
      'allowed_ips',
      'rate_limits',
      'quota',
    ]);
    for (const path of [
      '/api/keys/verify',
      '/api/orgs/{orgId}/api-keys/{keyId}/rotate',
      '/readyz',
    ]) {
      expect(res.body.paths[path]).toBeDefined();
    }
  });

  it('answers the demo status route with the status asked for', async () => {
    const org = await createOrg(app().client, 'Demo status');
    const res = await app().client.get('/v1/demo/status/503', { key: org.adminKey });
    expect(res.status).toBe(503);
    const bad = await app().client.get('/v1/demo/status/700', { key: org.adminKey });
    expectProblem(bad, 400, 'validation_failed');
  });
});
