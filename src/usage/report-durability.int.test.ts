/**
 * Accepted means durable: whatever `POST /usage-events` answers 202 for, the worker ingests —
 * through the real job on the real queue, the worker's own handler (job schema, batch ingest)
 * and real Postgres, with every event stored as the job carried it. Arbitrary Unicode: astral
 * characters (two UTF-16 units, one Postgres character), NUL, unpaired surrogate halves, text at
 * and past every limit, odd IPs, methods, statuses, latencies and times.
 */
import fc from 'fast-check';
import { sql } from 'kysely';
import type { PgBoss } from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingestUsageHandler } from '../../workers/ingest-usage.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { startTestApp, useTestDatabase, type TestApp } from '../testing/harness.ts';
import { createIngester } from './usage.ingest.ts';
import { decodePayload, unpackJob, USAGE_INGEST_QUEUE } from './usage.jobs.ts';
import { OUTCOMES, type UsageEvent } from './usage.types.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let org: TestOrg;
let keyIds: string[];
let boss: PgBoss;

beforeAll(async () => {
  app = await startTestApp(dbUrl());
  org = await createOrg(app.client, 'Durable');
  const other = await createKey(app.client, org, { scopes: ['events:read'] });
  keyIds = [org.adminKeyId, other.id];
  boss = await app.kt.queue();
});
afterAll(async () => app.close());

const DAY = 86_400_000;
/** Characters that have broken text pipelines: astral, NUL, lone halves, escapes, separators. */
const ODD = ['😀', '𝒜', '\u0000', '\uD800', '\uDFFF', 'é', '/', '?', '#', '%', '\t', '\n', '\\'];
const odd = fc.constantFrom(...ODD, 'a', '.', ' ', '\u200B', '\r');

const text = (maxLength: number) =>
  fc.oneof(
    fc.string({ unit: 'binary', maxLength }),
    fc.string({ unit: odd, maxLength }),
    // Long: at and past the stored limits (200 route, 256 user-agent characters), in emoji.
    fc.string({ unit: odd, minLength: Math.min(150, maxLength), maxLength }),
    fc.string({ unit: fc.constantFrom('😀', 'a'), minLength: Math.min(190, maxLength), maxLength }),
  );

const time = fc
  .tuple(fc.integer({ min: -7 * DAY + 120_000, max: 4 * 60_000 }), fc.boolean())
  .map(([offset, zulu]) => {
    const iso = new Date(Date.now() + offset).toISOString();
    return zulu ? iso : iso.replace('Z', '+00:00');
  });

const reported = () =>
  fc
    .record(
      {
        event_id: fc.uuid({ version: [4, 7] }).chain((id) => fc.constantFrom(id, id.toUpperCase())),
        key_id: fc.constantFrom(...keyIds).chain((id) => fc.constantFrom(id, id.toUpperCase())),
        occurred_at: time,
        method: fc.oneof(
          { weight: 20, arbitrary: fc.stringMatching(/^[A-Za-z]{1,16}$/) },
          { weight: 1, arbitrary: text(20) },
        ),
        where: fc.oneof(
          text(1000).map((path) => ({ path })),
          text(1000).map((route) => ({ route })),
        ),
        status: fc.oneof(
          { weight: 20, arbitrary: fc.integer({ min: 100, max: 599 }) },
          { weight: 1, arbitrary: fc.integer() },
        ),
        latency_ms: fc.oneof(
          { weight: 20, arbitrary: fc.double({ min: 0, max: 3_600_000, noNaN: true }) },
          { weight: 1, arbitrary: fc.double() },
        ),
        ip: fc.oneof(
          { weight: 8, arbitrary: fc.ipV4() },
          { weight: 8, arbitrary: fc.ipV6() },
          { weight: 2, arbitrary: fc.constant(null) },
          fc.constantFrom('::ffff:10.0.0.1', '::1.2.3.4', 'fe80::1%eth0', '0:0:0:0:0:ffff:a00:1'),
          fc.ipV4Extended(),
          text(45),
        ),
        user_agent: fc.oneof(text(2000), fc.constant(null)),
        outcome: fc.constantFrom(...OUTCOMES),
      },
      { requiredKeys: ['key_id', 'occurred_at', 'method', 'where', 'status', 'latency_ms'] },
    )
    .map(({ where, ...e }) => ({ ...e, ...where }));

type Stored = { event_id: string; method: string; route: string; user_agent: string | null };

async function storedRows(events: UsageEvent[]): Promise<Map<string, Stored>> {
  const ids = events.map((e) => e.eventId);
  const { rows } = await sql<Stored>`
    select event_id, method, route, user_agent from api_key_usage_events
    where org_id = ${org.orgId} and event_id = any(${ids}::uuid[])`.execute(app.kt.database.db);
  return new Map(rows.map((r) => [r.event_id, r]));
}

describe('POST /usage-events → worker', () => {
  it('ingests every event of every batch it answered 202 for, stored as sent', async () => {
    const handler = ingestUsageHandler({
      ingester: createIngester(app.kt.database, { retentionDays: app.kt.config.retentionDays }),
      logger: app.kt.logger,
      metrics: app.kt.metrics,
    });
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(reported(), { minLength: 1, maxLength: 4 }), async (events) => {
        const res = await fetch(`${app.baseUrl}/api/orgs/${org.orgId}/usage-events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${org.adminKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ events }),
        });
        const answer = await res.text();
        if (res.status !== 202) {
          expect([400, 422], answer).toContain(res.status);
          return;
        }
        accepted++;
        // The reported batch and any flush of the request recorder: every job the API made.
        const jobs = await boss.fetch(USAGE_INGEST_QUEUE, { batchSize: 100 });
        // The reported batch is queued before the 202: no job would be a loss, not a pass.
        expect(jobs.length).toBeGreaterThan(0);
        const results = await handler(jobs);
        await boss.deleteJob(
          USAGE_INGEST_QUEUE,
          jobs.map((j) => j.id),
        );
        expect(results.filter((r) => r.status !== 'completed')).toEqual([]);
        const sentIds = new Set<string>();
        for (const job of jobs) {
          const unpacked = unpackJob(job.data);
          if (!('payload' in unpacked)) throw new Error(unpacked.error);
          const sent = decodePayload(unpacked.payload);
          const stored = await storedRows(sent);
          for (const e of sent) {
            sentIds.add(e.eventId);
            expect(stored.get(e.eventId)).toEqual({
              event_id: e.eventId,
              method: e.method,
              route: e.route,
              user_agent: e.userAgent,
            });
          }
        }
        // The request's own events, by the ids it gave, are among those stored.
        const given = events.flatMap((e) => (e.event_id ? [e.event_id.toLowerCase()] : []));
        expect(given.filter((id) => !sentIds.has(id))).toEqual([]);
      }),
      { numRuns: 300 },
    );
    expect(accepted).toBeGreaterThan(50);
  }, 120_000);
});
