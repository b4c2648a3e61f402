/**
 * Reported events (POST /api/orgs/:orgId/usage-events) cannot make a dead key look used: a
 * `success` at or after the key's revocation or expiry is accepted and stored as the refusal it
 * must have been (`revoked`, `expired`), so one such event never costs a gateway its batch.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { createKey, createOrg, usageJobsFor, type TestOrg } from '../testing/factories.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let worker: Worker;

beforeAll(async () => {
  app = await startTestApp(dbUrl());
  worker = await startWorker(app.kt);
});
afterAll(async () => {
  await worker.stop();
  await app.close();
});

const MINUTE = 60_000;
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const ev = (keyId: string, at: string, outcome?: string) => ({
  key_id: keyId,
  occurred_at: at,
  method: 'GET',
  route: '/v1/things',
  status: 200,
  latency_ms: 1,
  ...(outcome && { outcome }),
});

const totals = (keyId: string) =>
  app.kt.database.db
    .selectFrom('api_key_usage_totals')
    .select(['request_count', 'denied_count', 'last_used_at', 'last_denied_at'])
    .where('key_id', '=', keyId)
    .executeTakeFirst();

const outcomes = async (keyId: string) =>
  (
    await app.kt.database.db
      .selectFrom('api_key_usage_events')
      .select('outcome')
      .where('key_id', '=', keyId)
      .orderBy('occurred_at')
      .execute()
  ).map((r) => r.outcome);

async function setup(name: string) {
  const org = await createOrg(app.client, name);
  const writer = await createKey(app.client, org, { scopes: ['events:write'] });
  const post = (events: object[]) =>
    app.client.post(`/api/orgs/${org.orgId}/usage-events`, { key: writer.key, body: { events } });
  return { org, post };
}

async function revoke(org: TestOrg, keyId: string, agoMinutes: number): Promise<void> {
  const res = await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${keyId}`, {
    key: org.adminKey,
  });
  expect(res.status).toBe(200);
  await sql`update api_keys set revoked_at = now() - make_interval(mins => ${agoMinutes})
    where id = ${keyId}`.execute(app.kt.database.db);
}

describe('reported successes of revoked and expired keys', { timeout: 60_000 }, () => {
  it('stores them as revoked/expired denied attempts and keeps the rest of the batch', async () => {
    const { org, post } = await setup('Reclassify');
    const live = await createKey(app.client, org, { name: 'live' });
    const dead = await createKey(app.client, org, { name: 'dead' });
    const lapsed = await createKey(app.client, org, { name: 'lapsed' });
    await revoke(org, dead.id, 10);
    await sql`update api_keys set expires_at = now() - interval '5 minutes'
      where id = ${lapsed.id}`.execute(app.kt.database.db);

    // Before its revocation the key worked: that use is kept and sets last_used_at.
    const usedAt = ago(20 * MINUTE);
    const before = await post([ev(dead.id, usedAt)]);
    expect(before.status, JSON.stringify(before.body)).toBe(202);
    expect(before.body).toEqual({ accepted: 1 });
    const used = await waitFor(async () => (await totals(dead.id))?.last_used_at);
    expect(used.toISOString()).toBe(usedAt);

    const mixed = await post([
      ev(dead.id, ago(MINUTE)),
      ev(lapsed.id, ago(MINUTE), 'success'),
      ev(live.id, ago(MINUTE)),
      ev(dead.id, ago(MINUTE), 'insufficient_scope'),
    ]);
    expect(mixed.status, JSON.stringify(mixed.body)).toBe(202);
    expect(mixed.body).toEqual({ accepted: 4, reclassified: 2 });

    const deadTotals = await waitFor(async () => {
      const row = await totals(dead.id);
      return row?.denied_count === 2 ? row : undefined;
    });
    expect(deadTotals.request_count).toBe(1);
    expect(deadTotals.last_used_at?.toISOString()).toBe(usedAt);
    expect(deadTotals.last_denied_at?.getTime()).toBeGreaterThan(used.getTime());
    expect(await outcomes(dead.id)).toEqual(['success', 'revoked', 'insufficient_scope']);

    const lapsedTotals = await waitFor(() => totals(lapsed.id));
    expect(lapsedTotals).toMatchObject({ request_count: 0, denied_count: 1, last_used_at: null });
    expect(await outcomes(lapsed.id)).toEqual(['expired']);

    const liveTotals = await waitFor(() => totals(live.id));
    expect(liveTotals).toMatchObject({ request_count: 1, denied_count: 0 });
    expect(liveTotals.last_used_at).not.toBeNull();
    expect(await outcomes(live.id)).toEqual(['success']);

    // The reclassified events raise the revoked-key-used notice like any denied attempt.
    const noticed = await app.kt.database.db
      .selectFrom('api_keys')
      .select(['id', 'revoked_use_notified_at'])
      .where('id', 'in', [dead.id, lapsed.id, live.id])
      .execute();
    const notifiedAt = new Map(noticed.map((r) => [r.id, r.revoked_use_notified_at]));
    expect(notifiedAt.get(dead.id)).not.toBeNull();
    expect(notifiedAt.get(lapsed.id)).not.toBeNull();
    expect(notifiedAt.get(live.id)).toBeNull();
  });

  it('still refuses the whole batch for a key outside the org, naming only that event', async () => {
    const { org, post } = await setup('Outside');
    const dead = await createKey(app.client, org, { name: 'dead' });
    await revoke(org, dead.id, 10);
    const refused = await post([ev(dead.id, ago(MINUTE)), ev(randomUUID(), ago(MINUTE))]);
    expectProblem(refused, 422, 'unprocessable');
    expect(refused.body.errors).toEqual([
      { path: 'body.events.1.key_id', message: 'no such key in this org' },
    ]);
    expect(await usageJobsFor(app.kt.database.db, dead.id)).toBe(0);
  });
});
