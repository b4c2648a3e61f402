import type { UsageEvent } from '../usage/usage.types.ts';
import { sql, type Kysely } from 'kysely';
import { decodePayload, unpackJob } from '../usage/usage.jobs.ts';
import type { TestClient } from './client.ts';
import { OPERATOR_TOKEN } from './harness.ts';

export type TestOrg = { orgId: string; adminKey: string; adminKeyId: string };

export async function createOrg(client: TestClient, name = 'Acme'): Promise<TestOrg> {
  const res = await client.post('/api/orgs', { key: OPERATOR_TOKEN, body: { name } });
  if (res.status !== 201) throw new Error(`createOrg: ${res.status} ${res.text}`);
  return {
    orgId: res.body.org.id,
    adminKey: res.body.admin_key.key,
    adminKeyId: res.body.admin_key.api_key.id,
  };
}

export type TestKey = { key: string; id: string; body: any };

export async function createKey(
  client: TestClient,
  org: TestOrg,
  body: {
    name?: string;
    scopes?: string[];
    environment?: string;
    expires_at?: string | null;
    allowed_ips?: string[];
    rate_limits?: { name: string; limit: number; window_seconds: number }[];
  } = {},
  asKey = org.adminKey,
): Promise<TestKey> {
  const res = await client.post(`/api/orgs/${org.orgId}/api-keys`, {
    key: asKey,
    body: { name: 'test key', ...body },
  });
  if (res.status !== 201) throw new Error(`createKey: ${res.status} ${res.text}`);
  return { key: res.body.key, id: res.body.api_key.id, body: res.body.api_key };
}

export type ReportedEvent = {
  event_id?: string;
  key_id: string;
  occurred_at: string;
  method?: string;
  route?: string;
  path?: string;
  status?: number;
  latency_ms?: number;
  ip?: string;
  user_agent?: string;
  outcome?: string;
};

/** Reports events through POST /usage-events in batches of 1,000 (the real ingest path). */
export async function reportEvents(
  client: TestClient,
  org: TestOrg,
  writerKey: string,
  events: ReportedEvent[],
): Promise<void> {
  for (let i = 0; i < events.length; i += 1000) {
    const batch = events.slice(i, i + 1000).map((e) => ({
      method: 'GET',
      status: 200,
      latency_ms: 5,
      ...(e.path === undefined && e.route === undefined ? { route: '/v1/things' } : {}),
      ...e,
    }));
    const res = await client.post(`/api/orgs/${org.orgId}/usage-events`, {
      key: writerKey,
      body: { events: batch },
    });
    if (res.status !== 202) throw new Error(`reportEvents: ${res.status} ${res.text}`);
  }
}

/** Usage jobs on the queue (any state) holding at least one event of `keyId`. */
export async function usageJobsFor(db: Kysely<any>, keyId: string): Promise<number> {
  const { rows } = await sql<{
    data: unknown;
  }>`select data from pgboss.job where name = 'usage.ingest'`.execute(db);
  return rows.filter((r) => {
    const unpacked = unpackJob(r.data);
    return 'payload' in unpacked && decodePayload(unpacked.payload).some((e) => e.keyId === keyId);
  }).length;
}

/**
 * A minimal successful usage event for the ingest and buffer paths: event id number `n` (a fixed
 * UUIDv7-shaped id, so reruns replay the same event), at `occurredAt`.
 */
export function usageEvent(
  at: { orgId: string; keyId: string; occurredAt: number },
  n: number,
): UsageEvent {
  return {
    eventId: `018f0000-0000-7000-8000-${String(n).padStart(12, '0')}`,
    orgId: at.orgId,
    keyId: at.keyId,
    occurredAt: at.occurredAt,
    method: 'GET',
    route: '/r',
    status: 200,
    latencyMs: 1,
    ip: null,
    userAgent: null,
    outcome: 'success',
  };
}

/**
 * Writes `count` raw events straight into the events table (no rollups), one millisecond per ten
 * events from `from`, for tests that need a large range fast. The month partitions must exist
 * already (ingest some events through the API first).
 */
export async function insertRawEvents(
  db: Kysely<any>,
  o: { orgId: string; keyIds: string[]; count: number; from: Date; userAgentBytes: number },
): Promise<void> {
  await sql`insert into api_key_usage_events
      (event_id, org_id, key_id, occurred_at, method, route, status, latency_ms, ip, user_agent,
       outcome)
    select gen_random_uuid(), ${o.orgId}::uuid, (${o.keyIds}::uuid[])[1 + i % ${o.keyIds.length}],
      ${o.from}::timestamptz + (i / 10) * interval '1 millisecond', 'GET', '/bulk/:id', 200, 1.5,
      '10.9.0.1', 'bulk, "padded" ' || repeat('x', ${o.userAgentBytes}), 'ok'
    from generate_series(0, ${o.count - 1}) as i`.execute(db);
}

/**
 * Inserts `names.length` active keys of one org straight into api_keys (no audit, no outbox,
 * unusable hashes), for tests that need many keys fast: 999 creates through the API took over
 * a minute under CI's coverage load.
 */
export async function insertBulkKeys(
  db: Kysely<any>,
  o: { orgId: string; names: string[]; scopes: string[] },
): Promise<void> {
  await sql`insert into api_keys (id, org_id, name, environment, prefix, key_hash, scopes, created_at)
    select gen_random_uuid(), ${o.orgId}::uuid, n.name, 'live', 'sk_live_bulk' || n.i,
      sha256(convert_to('bulk ' || gen_random_uuid()::text, 'UTF8')), ${o.scopes}::text[],
      now() - n.i * interval '1 millisecond'
    from unnest(${o.names}::text[]) with ordinality as n(name, i)`.execute(db);
}
