import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR_TOKEN, useTestApp, waitFor } from '../testing/harness.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { expectProblem } from '../testing/problem.ts';

// Two pooled connections, so a test can hold them all.
const app = useTestApp({ config: { dbPoolSize: 2 } });

let org: TestOrg;
beforeAll(async () => {
  org = await createOrg(app().client, 'Error middleware');
});

describe('database connections exhausted', () => {
  it('answers 503 problem+json and reports not ready instead of hanging, then recovers', async () => {
    const unused = await createKey(app().client, org); // never authenticated: not cached
    const pool = app().kt.database.pool;
    const held = await Promise.all([pool.connect(), pool.connect()]);
    let answers;
    try {
      answers = await Promise.all([
        // The admin key is cached: the request gets as far as its query, which waits for a connection.
        app().client.get(`/api/orgs/${org.orgId}/api-keys`, { key: org.adminKey }),
        // An uncached key: the key lookup itself waits for a connection.
        app().client.get('/v1/demo/orders/1', { key: unused.key }),
        app().client.get('/readyz'),
      ]);
    } finally {
      for (const client of held) client.release();
    }
    const [list, lookup, ready] = answers;
    for (const res of [list, lookup]) {
      expectProblem(res, 503, 'service_unavailable');
      expect(res.body.detail).toBe('The service is temporarily unavailable; retry shortly.');
      expect(res.text).not.toMatch(/timeout|pool|connect/i);
    }
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual({
      status: 'unavailable',
      checks: { database: 'failing', migrations: 'failing', queue: 'ok', key_changes: 'ok' },
    });
    const logged = app().logs.join('');
    expect(logged).toContain('"msg":"request failed"');
    expect(logged).toContain('"msg":"key lookup failed"');

    expect((await app().client.get('/readyz')).status).toBe(200);
    const again = await app().client.get(`/api/orgs/${org.orgId}/api-keys`, { key: org.adminKey });
    expect(again.status).toBe(200);
  });
});

/**
 * Runs `act` on the backend of a PATCH that waits for a row lock this test holds, and returns
 * the PATCH's answer: a way to make Postgres fail one request's query at a chosen moment.
 */
async function failBlockedPatch(act: 'pg_terminate_backend' | 'pg_cancel_backend') {
  const k = await createKey(app().client, org);
  const holder = new pg.Client({ connectionString: app().kt.config.databaseUrl });
  await holder.connect();
  try {
    await holder.query('begin');
    await holder.query('select 1 from api_keys where id = $1 for update', [k.id]);
    const patch = app().client.patch(`/api/orgs/${org.orgId}/api-keys/${k.id}`, {
      key: org.adminKey,
      body: { name: 'renamed' },
    });
    const pid = await waitFor(async () => {
      const { rows } = await holder.query<{ pid: number }>(
        `select pid from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
      );
      return rows[0]?.pid;
    });
    await holder.query(`select ${act}($1)`, [pid]);
    const res = await patch;
    await holder.query('rollback');
    return res;
  } finally {
    await holder.end();
  }
}

describe('database failures during a request', () => {
  it('answers 503 when Postgres ends the connection mid-query (restart, failover)', async () => {
    const res = await failBlockedPatch('pg_terminate_backend');
    expectProblem(res, 503, 'service_unavailable');
    expect((await app().client.get('/readyz')).status).toBe(200);
  });

  it('answers 500 internal with a generic detail, never the SQL error, for an unexpected one', async () => {
    const res = await failBlockedPatch('pg_cancel_backend');
    expectProblem(res, 500, 'internal');
    expect(res.body.detail).toBe(
      'An unexpected error occurred; quote the request_id when reporting it.',
    );
    expect(res.text).not.toMatch(/cancel|statement|api_keys/i);
    const line = app().logs.find(
      (l) => l.includes(res.body.request_id) && l.includes('request failed'),
    );
    expect(line).toContain('canceling statement due to user request');
  });
});

describe('request bodies', () => {
  const keys = () => `/api/orgs/${org.orgId}/api-keys`;
  const createWith = (rawBody: string, headers: Record<string, string>) =>
    app().client.post(keys(), { key: org.adminKey, rawBody, headers });

  it('refuses a non-JSON body with 415 unsupported_media_type', async () => {
    const res = await createWith('name=x', { 'content-type': 'application/x-www-form-urlencoded' });
    expectProblem(res, 415, 'unsupported_media_type');
  });

  it('refuses an unsupported content encoding or charset with 415', async () => {
    const json = '{"name":"x"}';
    const encoded = await createWith(json, {
      'content-type': 'application/json',
      'content-encoding': 'compress',
    });
    expectProblem(encoded, 415, 'unsupported_media_type');
    expect(encoded.body.detail).toBe('unsupported body encoding');
    const charset = await createWith(json, { 'content-type': 'application/json; charset=latin1' });
    expectProblem(charset, 415, 'unsupported_media_type');
  });

  it('treats a missing body as an empty object: 400 where fields are required', async () => {
    for (const path of [keys(), '/api/keys/verify', `/api/orgs/${org.orgId}/usage-events`]) {
      const res = await app().client.post(path, { key: org.adminKey });
      expectProblem(res, 400, 'validation_failed');
    }
    const orgs = await app().client.post('/api/orgs', { key: OPERATOR_TOKEN });
    expectProblem(orgs, 400, 'validation_failed');
  });

  it('rotates without a body with overlap 0 (old key revoked at once); refuses an empty patch', async () => {
    const k = await createKey(app().client, org, { name: 'no body' });
    const patched = await app().client.patch(`${keys()}/${k.id}`, { key: org.adminKey });
    expectProblem(patched, 400, 'validation_failed');
    const rotated = await app().client.post(`${keys()}/${k.id}/rotate`, { key: org.adminKey });
    expect(rotated.status).toBe(201);
    expect(rotated.body.previous.status).toBe('revoked');
    expect((await app().client.get('/v1/demo/orders/1', { key: k.key })).status).toBe(401);
    expect(rotated.body.api_key.rotated_from_id).toBe(k.id);
  });
});
