/**
 * Reported events (POST /api/orgs/:orgId/usage-events) cannot make a dead key look used: a
 * `success` at or after the key's revocation or expiry is refused, all-or-nothing; refusals
 * (`revoked`, `expired`, `insufficient_scope`) of a dead key are accepted as evidence.
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createKey, createOrg, usageJobsFor } from '../testing/factories.ts';
import { useTestApp } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';

const app = useTestApp();
const MINUTE = 60_000;
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();

describe('reported events of revoked and expired keys', () => {
  it('refuses a success after the key was revoked, naming the event, storing nothing', async () => {
    const org = await createOrg(app().client, 'Reporting');
    const writer = await createKey(app().client, org, { scopes: ['events:write'] });
    const live = await createKey(app().client, org, { name: 'live' });
    const dead = await createKey(app().client, org, { name: 'dead' });
    const path = `/api/orgs/${org.orgId}/usage-events`;
    const revoked = await app().client.delete(`/api/orgs/${org.orgId}/api-keys/${dead.id}`, {
      key: org.adminKey,
    });
    expect(revoked.status).toBe(200);
    const ev = (keyId: string, at: string, outcome?: string) => ({
      key_id: keyId,
      occurred_at: at,
      method: 'GET',
      route: '/v1/things',
      status: 200,
      latency_ms: 1,
      ...(outcome && { outcome }),
    });
    const post = (events: object[]) =>
      app().client.post(path, { key: writer.key, body: { events } });

    const refused = await post([ev(live.id, ago(0)), ev(dead.id, ago(0))]);
    expectProblem(refused, 422, 'unprocessable');
    expect(refused.body.errors).toEqual([
      { path: 'body.events.1.outcome', message: expect.stringContaining('revoked') },
    ]);
    expect(refused.body.detail).toContain('body.events.1.outcome');
    const explicit = await post([ev(dead.id, ago(0), 'success')]);
    expectProblem(explicit, 422, 'unprocessable');
    expect(await usageJobsFor(app().kt.database.db, live.id)).toBe(0);
    expect(await usageJobsFor(app().kt.database.db, dead.id)).toBe(0);

    // Before its revocation the key worked; after it, its refusals are evidence.
    await sql`update api_keys set revoked_at = now() - interval '10 minutes'
      where id = ${dead.id}`.execute(app().kt.database.db);
    const accepted = await post([
      ev(dead.id, ago(20 * MINUTE)),
      ev(dead.id, ago(0), 'revoked'),
      ev(dead.id, ago(0), 'insufficient_scope'),
    ]);
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
    expect(accepted.body).toEqual({ accepted: 3 });
  });

  it('refuses a success after the key expired, accepts one before and its refusals', async () => {
    const org = await createOrg(app().client, 'Expiring');
    const writer = await createKey(app().client, org, { scopes: ['events:write'] });
    const key = await createKey(app().client, org, { name: 'expired' });
    await sql`update api_keys set expires_at = now() - interval '5 minutes'
      where id = ${key.id}`.execute(app().kt.database.db);
    const path = `/api/orgs/${org.orgId}/usage-events`;
    const ev = (at: string, outcome?: string) => ({
      key_id: key.id,
      occurred_at: at,
      method: 'POST',
      path: '/v1/orders',
      status: 201,
      latency_ms: 3,
      ...(outcome && { outcome }),
    });
    const refused = await app().client.post(path, {
      key: writer.key,
      body: { events: [ev(ago(10 * MINUTE)), ev(ago(MINUTE))] },
    });
    expectProblem(refused, 422, 'unprocessable');
    expect(refused.body.errors).toEqual([
      { path: 'body.events.1.outcome', message: expect.stringContaining('expired') },
    ]);
    const accepted = await app().client.post(path, {
      key: writer.key,
      body: { events: [ev(ago(10 * MINUTE)), ev(ago(MINUTE), 'expired')] },
    });
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
  });
});
