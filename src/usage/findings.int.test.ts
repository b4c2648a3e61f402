/** GET /api/orgs/:orgId/findings: what an org admin should look at, each kind by its rule. */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { useTestApp } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';
import { runKeyWatch } from '../webhooks/watch.ts';

const app = useTestApp();
const HOUR_MS = 3_600_000;

/** A key's lifetime totals, as the ingest keeps them. */
type Totals = {
  request_count?: number;
  denied_count?: number;
  limited_count?: number;
  last_used_at?: Date;
  last_denied_at?: Date;
  last_limited_at?: Date;
};

async function totals(org: TestOrg, keyId: string, t: Totals) {
  const row = { request_count: 0, denied_count: 0, limited_count: 0, ...t };
  await sql`insert into api_key_usage_totals (key_id, org_id, request_count, denied_count,
      limited_count, last_used_at, last_denied_at, last_limited_at)
    values (${keyId}, ${org.orgId}, ${row.request_count}, ${row.denied_count},
      ${row.limited_count}, ${row.last_used_at ?? null}, ${row.last_denied_at ?? null},
      ${row.last_limited_at ?? null})
    on conflict (org_id, key_id) do update set request_count = excluded.request_count,
      denied_count = excluded.denied_count, limited_count = excluded.limited_count,
      last_used_at = excluded.last_used_at, last_denied_at = excluded.last_denied_at,
      last_limited_at = excluded.last_limited_at`.execute(app().kt.database.db);
}

/** `requests` in `hour`, in the rollups the ingest writes together: hourly, daily, totals. */
async function used(org: TestOrg, keyId: string, hour: Date, requests: number) {
  const db = app().kt.database.db;
  await sql`insert into api_key_usage_hourly (key_id, hour, org_id, requests, latency_hist)
    values (${keyId}, ${hour}, ${org.orgId}, ${requests}, '{}')`.execute(db);
  await sql`insert into api_key_usage_daily (key_id, day, org_id, requests, latency_hist)
    values (${keyId}, (${hour}::timestamptz at time zone 'UTC')::date, ${org.orgId}, ${requests}, '{}')
    on conflict (org_id, key_id, day) do update
      set requests = api_key_usage_daily.requests + excluded.requests`.execute(db);
  await sql`insert into api_key_usage_totals (key_id, org_id, request_count, last_used_at)
    values (${keyId}, ${org.orgId}, ${requests}, ${hour})
    on conflict (org_id, key_id) do update set
      request_count = api_key_usage_totals.request_count + excluded.request_count,
      last_used_at = greatest(api_key_usage_totals.last_used_at, excluded.last_used_at)`.execute(
    db,
  );
}

/** The worker's key watch, which flags spikes (every 5 minutes in production). */
const keyWatch = () =>
  runKeyWatch(app().kt.database.db, { now: new Date(), spike: app().kt.config.spike });

const findings = async (org: TestOrg, key = org.adminKey) =>
  app().client.get(`/api/orgs/${org.orgId}/findings`, { key });

describe('findings', () => {
  it('lists each kind by its rule, most recent first, and nothing of another org', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Findings');
    const admin = { key: org.adminKey };
    const keys = `/api/orgs/${org.orgId}/api-keys`;
    const now = Date.now();

    const leaked = await createKey(client, org, { name: 'leaked' });
    await client.delete(`${keys}/${leaked.id}`, admin);
    await totals(org, leaked.id, { denied_count: 3, last_denied_at: new Date(now + 1000) });
    // Denied before its revocation only: not a finding.
    const quiet = await createKey(client, org, { name: 'quiet revoked' });
    await totals(org, quiet.id, { denied_count: 1, last_denied_at: new Date(now - HOUR_MS) });
    await client.delete(`${keys}/${quiet.id}`, admin);

    const old = await createKey(client, org, { name: 'old' });
    const rotated = await client.post(`${keys}/${old.id}/rotate`, {
      ...admin,
      body: { overlap_seconds: 3600 },
    });
    await totals(org, old.id, { request_count: 9, last_used_at: new Date(now + 2000) });

    const limited = await createKey(client, org, { name: 'limited' });
    await totals(org, limited.id, { limited_count: 4, last_limited_at: new Date(now - HOUR_MS) });
    const longAgo = await createKey(client, org, { name: 'limited long ago' });
    await totals(org, longAgo.id, {
      limited_count: 4,
      last_limited_at: new Date(now - 30 * HOUR_MS),
    });

    const spiking = await createKey(client, org, { name: 'spiking' });
    const thisHour = new Date(now - (now % HOUR_MS));
    await used(org, spiking.id, new Date(thisHour.getTime() - 48 * HOUR_MS), 70);
    await used(org, spiking.id, thisHour, 150);
    const steady = await createKey(client, org, { name: 'steady' });
    await used(org, steady.id, new Date(thisHour.getTime() - 48 * HOUR_MS), 700);
    await used(org, steady.id, thisHour, 150);
    await keyWatch();

    const other = await createOrg(client, 'Other findings');
    const foreign = await createKey(client, other, { name: 'foreign' });
    await totals(other, foreign.id, { limited_count: 1, last_limited_at: new Date(now) });

    const res = await findings(org);
    expect(res.status).toBe(200);
    const byKind = (kind: string) => res.body.data.filter((f: { kind: string }) => f.kind === kind);
    expect(byKind('revoked_key_used')).toEqual([
      expect.objectContaining({
        severity: 'warning',
        key: expect.objectContaining({ id: leaked.id }),
        count: 3,
      }),
    ]);
    expect(byKind('old_key_in_use')).toEqual([
      expect.objectContaining({
        severity: 'warning',
        key: expect.objectContaining({ id: old.id, name: 'old' }),
        replaced_by: rotated.body.api_key.id,
      }),
    ]);
    expect(byKind('limited').map((f: { key: { id: string } }) => f.key.id)).toEqual([limited.id]);
    expect(byKind('spike')).toEqual([
      expect.objectContaining({
        severity: 'info',
        key: expect.objectContaining({ id: spiking.id }),
        count: 150,
        daily_mean: 10,
      }),
    ]);
    expect(JSON.stringify(res.body)).not.toContain(foreign.id);
  });

  it('lists a spike once the key watch has flagged it, while the rule still holds', async () => {
    const { client } = app();
    const org = await createOrg(client, 'Spike watch');
    const key = await createKey(client, org, { name: 'bursty' });
    const now = Date.now();
    const thisHour = new Date(now - (now % HOUR_MS));
    await used(org, key.id, thisHour, 400);
    const spikes = async () =>
      (await findings(org)).body.data.filter((f: { kind: string }) => f.kind === 'spike');
    expect(await spikes()).toEqual([]); // not judged yet
    await keyWatch();
    expect(await spikes()).toEqual([
      expect.objectContaining({ key: expect.objectContaining({ id: key.id }), count: 400 }),
    ]);
    // A baseline that grew since (late events reported for last week): no longer a spike here,
    // before the next watch clears the flag.
    await used(org, key.id, new Date(thisHour.getTime() - 72 * HOUR_MS), 7_000);
    expect(await spikes()).toEqual([]);
    await client.delete(`/api/orgs/${org.orgId}/api-keys/${key.id}`, { key: org.adminKey });
    await keyWatch();
    const flagged = await sql<{ spike_since: Date | null }>`
      select spike_since from api_keys where id = ${key.id}`.execute(app().kt.database.db);
    expect(flagged.rows[0]?.spike_since).toBeNull();
  });

  it('needs usage:read', async () => {
    const org = await createOrg(app().client, 'Findings scope');
    const keysOnly = await createKey(app().client, org, { scopes: ['keys:read'] });
    expectProblem(await findings(org, keysOnly.key), 403, 'insufficient_scope');
  });
});
