/**
 * SPEC §9: "Postgres restarted under load: cached keys keep authenticating; buffered events arrive
 * after recovery; the buffer is bounded and every dropped event is counted in /metrics."
 *
 * `keytrail serve` (startServer of src/main.ts, with its in-process worker) runs on a dedicated
 * embedded cluster that is stopped (fast shutdown) under traffic and started again on the same
 * port. The client counts every answered request made with a key of the org (each is one usage
 * event); at the end every one of them is either a raw row or counted as dropped, once.
 */
import { Writable } from 'node:stream';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime, startServer, type RunningServer } from '../src/main.ts';
import { databaseUrl } from '../src/testing/databases.ts';
import { createKey, createOrg, type TestKey } from '../src/testing/factories.ts';
import { OPERATOR_TOKEN, waitFor } from '../src/testing/harness.ts';
import { TestClient } from '../src/testing/client.ts';
import { TEST_PEPPER } from '../src/testing/leak-scan.ts';
import { KEY_CHANGED_CHANNEL } from '../src/keys/keys.queries.ts';
import { startWorker } from '../workers/main.ts';
import { startRestartablePostgres, type RestartablePostgres } from './faults-postgres.ts';
import { ingestQueueState } from './faults-workers.ts';
import { rawIdentity, rollupMismatches } from './faults-rollups.ts';

/** Small enough that a few seconds of outage overflow it: drops must be counted. */
const BUFFER_MAX = 500;
const OUTAGE_MS = 4_000;
/** After Postgres is back: ready, and every event in or counted, within these. */
const READY_BOUND_MS = 20_000;
const SETTLE_BOUND_MS = 30_000;
const CLIENTS = 6;

let cluster: RestartablePostgres;
let server: RunningServer;
let client: TestClient;
let db: Kysely<any>;
const logs: string[] = [];

beforeAll(async () => {
  cluster = await startRestartablePostgres();
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query('create database keytrail_restart');
  await admin.end();
  const url = databaseUrl(cluster.url, 'keytrail_restart');
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(chunk.toString('utf8'));
      done();
    },
  });
  const runtime = await openRuntime(
    {
      DATABASE_URL: url,
      KEYTRAIL_KEY_PEPPER: TEST_PEPPER,
      KEYTRAIL_OPERATOR_TOKEN: OPERATOR_TOKEN,
      KEYTRAIL_DEMO_ROUTES: 'true',
      PORT: '0',
      HOST: '127.0.0.1',
      KEYTRAIL_USAGE_FLUSH_INTERVAL_MS: '50',
      KEYTRAIL_USAGE_BATCH_SIZE: '200',
      KEYTRAIL_USAGE_BUFFER_MAX: String(BUFFER_MAX),
      KEYTRAIL_LOG_LEVEL: 'info',
      KEYTRAIL_LOG_FORMAT: 'json',
    },
    { logDestination: sink },
  );
  server = await startServer(runtime, { startWorker });
  client = new TestClient(server.baseUrl.replace('localhost', '127.0.0.1'));
  // The test's own reader: its connections die with the restart too, and must not crash the run.
  const pool = new pg.Pool({ connectionString: url, max: 2, options: '-c TimeZone=UTC' });
  pool.on('error', () => undefined);
  pool.on('connect', (c) => c.on('error', () => undefined));
  db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
}, 60_000);

afterAll(async () => {
  await db?.destroy();
  await server?.stop();
  await cluster?.destroy();
});

async function metric(name: string): Promise<number> {
  const res = await fetch(`${client.baseUrl}/metrics`);
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not exposed`);
  return Number(line.slice(name.length + 1));
}

type Probe = { start: number; end: number; status: number };
const within = (p: Probe, from: number, to: number) => p.start >= from && p.end <= to;
const warnings = () =>
  logs
    .filter((l) => /"level":(40|50|60)/.test(l))
    .map((l) => {
      const { msg, err } = JSON.parse(l) as { msg?: string; err?: string };
      return `${msg ?? ''}${err ? `: ${String(err).slice(0, 120)}` : ''}`;
    });

describe('Postgres restarted under load', () => {
  it('keeps cached keys authenticating, is unready while down, and loses no event uncounted', async () => {
    const started = Date.now();
    const org = await createOrg(client, 'Restart');
    // Every answered request made with a key of the org is one usage event.
    let answered = 0;
    const track = async (
      path: string,
      key: string,
      init: { method?: string; body?: unknown } = {},
    ) => {
      const res = await client.request(init.method ?? 'GET', path, { key, body: init.body });
      answered += 1;
      return res;
    };
    const keys: TestKey[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await track(`/api/orgs/${org.orgId}/api-keys`, org.adminKey, {
        method: 'POST',
        body: { name: `traffic ${i}` },
      });
      expect(res.status).toBe(201);
      keys.push({ key: res.body.key, id: res.body.api_key.id, body: res.body.api_key });
    }
    const uncached = await createKey(client, org, { name: 'never used before the outage' });
    answered += 1;
    const listenProbe = await createKey(client, org, { name: 'revoked elsewhere' });
    answered += 1;
    // Cache every traffic key, and see the pipeline work end to end before the outage.
    for (const k of [...keys, listenProbe]) {
      expect((await track('/v1/demo/orders/1', k.key)).status).toBe(200);
    }
    await waitFor(async () => (await rawIdentity(db, org.orgId)).rows === answered, {
      timeoutMs: 15_000,
      intervalMs: 100,
    });

    // Traffic from CLIENTS loops, each response stamped with its start and end.
    const responses: Probe[] = [];
    const failures: string[] = [];
    let running = true;
    const traffic = async (n: number) => {
      for (let i = n; running; i += CLIENTS) {
        const k = keys[i % keys.length] as TestKey;
        const start = Date.now();
        try {
          const res = await track(`/v1/demo/orders/${i}`, k.key);
          responses.push({ start, end: Date.now(), status: res.status });
        } catch (error) {
          failures.push(String(error));
        }
      }
    };
    const readiness: Probe[] = [];
    const bufferSizes: number[] = [];
    const probe = async () => {
      while (running) {
        const start = Date.now();
        const res = await fetch(`${client.baseUrl}/readyz`);
        await res.arrayBuffer();
        readiness.push({ start, end: Date.now(), status: res.status });
        bufferSizes.push(await metric('keytrail_usage_buffer_events'));
        // The next sample once the traffic loops got CLIENTS more answers (cached keys are served
        // while Postgres is down too): paced by progress, not by a clock.
        const next = responses.length + failures.length + CLIENTS;
        await waitFor(() => !running || responses.length + failures.length >= next, {
          timeoutMs: 10_000,
          intervalMs: 5,
        }).catch(() => undefined);
      }
    };
    const loops = [...Array.from({ length: CLIENTS }, (_, n) => traffic(n)), probe()];

    // Postgres goes down while the in-process worker is inside an ingest transaction (waited
    // for up to 3 s): the batch in flight must not be lost either.
    await waitFor(() => responses.length >= 300, { timeoutMs: 15_000, intervalMs: 20 });
    const inBatch = await waitFor(
      async () => {
        const { rows } = await sql<{ n: number }>`
          select count(*)::int as n from pg_stat_activity
          where application_name = 'keytrail-ingest' and xact_start is not null
            and query ilike '%api_key_usage%' and pid <> pg_backend_pid()`.execute(db);
        return (rows[0]?.n ?? 0) > 0;
      },
      { timeoutMs: 3_000, intervalMs: 2 },
    ).catch(() => false);
    const stopCalled = Date.now();
    await cluster.stop();
    const down = Date.now();
    // A key not in the cache needs Postgres: a prompt 503 (pool wait bounded), never a hang.
    const t0 = Date.now();
    const miss = await client.get('/v1/demo/orders/1', { key: uncached.key });
    const missMs = Date.now() - t0;
    // Down for OUTAGE_MS at least, and until traffic and /readyz have both met the outage.
    await waitFor(
      () =>
        Date.now() - down >= OUTAGE_MS &&
        responses.filter((r) => r.start >= down).length >= 100 &&
        readiness.some((p) => p.start >= down && p.status === 503),
      { timeoutMs: OUTAGE_MS + 15_000, intervalMs: 20 },
    );
    const startCalled = Date.now();
    await cluster.start();
    const up = Date.now();
    const readyAt = await waitFor(
      () => readiness.find((p) => p.start >= up && p.status === 200)?.end,
      { timeoutMs: READY_BOUND_MS, intervalMs: 50 },
    ).catch(() => {
      throw new Error(
        `not ready ${READY_BOUND_MS} ms after restart; warnings: ${warnings().slice(-10).join(' | ')}`,
      );
    });
    // Traffic goes on after the recovery before the revocation check.
    await waitFor(() => responses.filter((r) => r.start >= up).length >= 300, {
      timeoutMs: 15_000,
      intervalMs: 20,
    });

    // Revocation by another instance (its NOTIFY) reaches this one once it listens again.
    const listening = await waitFor(
      async () => {
        const { rows } = await sql<{ n: number }>`
          select count(*)::int as n from pg_stat_activity
          where application_name = 'keytrail-listen' and query ilike 'listen%'`.execute(db);
        return (rows[0]?.n ?? 0) > 0;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    ).catch(() => false);
    expect((await track('/v1/demo/orders/2', listenProbe.key)).status).toBe(200);
    const notifier = new pg.Client({
      connectionString: databaseUrl(cluster.url, 'keytrail_restart'),
    });
    await notifier.connect();
    await notifier.query('update api_keys set revoked_at = now() where id = $1', [listenProbe.id]);
    await notifier.query('select pg_notify($1, $2)', [KEY_CHANGED_CHANNEL, listenProbe.id]);
    await notifier.end();
    const revokedSeen = await waitFor(
      async () => (await track('/v1/demo/orders/3', listenProbe.key)).status === 401,
      { timeoutMs: 1_500, intervalMs: 50 },
    ).catch(() => false);

    running = false;
    await Promise.all(loops);

    // Every answered request's event is ingested or counted as dropped.
    const settle = async () => {
      const raw = await rawIdentity(db, org.orgId);
      const dropped = await metric('keytrail_usage_events_dropped_total');
      const buffered = await metric('keytrail_usage_buffer_events');
      return { raw, dropped, buffered, queue: await ingestQueueState(db) };
    };
    const settled = await waitFor(
      async () => {
        const s = await settle();
        const idle = s.queue.created + s.queue.retry + s.queue.active === 0;
        return s.buffered === 0 && idle && s.raw.rows + s.dropped >= answered ? s : null;
      },
      { timeoutMs: SETTLE_BOUND_MS, intervalMs: 250 },
    ).catch(async () => {
      const s = await settle();
      throw new Error(
        `events unaccounted ${SETTLE_BOUND_MS} ms after the traffic ended: answered ${answered}, ` +
          `ingested ${s.raw.rows}, dropped ${s.dropped}, buffered ${s.buffered}, ` +
          `usage.ingest ${JSON.stringify(s.queue)}; warnings: ${warnings().slice(-12).join(' | ')}`,
      );
    });

    const outage = responses.filter((p) => within(p, down, startCalled));
    const downProbes = readiness.filter((p) => within(p, down, startCalled));
    const { rows: outageRows } = await sql<{ n: number }>`
      select count(*)::int as n from api_key_usage_events where org_id = ${org.orgId}
        and occurred_at between ${new Date(down)} and ${new Date(startCalled)}`.execute(db);
    const summary = {
      answered,
      ingested: settled.raw.rows,
      dropped: settled.dropped,
      duringOutage: outage.length,
      outageEventsIngested: outageRows[0]?.n ?? 0,
      maxBuffer: Math.max(...bufferSizes),
      readyAfterRestartMs: readyAt - up,
      listenerBack: listening,
      stoppedMidBatch: inBatch,
      uncachedMiss: { status: miss.status, ms: missMs },
      queueRetried: settled.queue.retried,
      totalMs: Date.now() - started,
    };
    console.log(`[postgres-restart] ${JSON.stringify(summary)}; stop took ${down - stopCalled} ms`);

    expect(failures).toEqual([]);
    expect(inBatch, 'Postgres was not stopped during an ingest transaction').toBe(true);
    // Cached keys authenticate while Postgres is down.
    expect(outage.length).toBeGreaterThan(50);
    expect(outage.filter((p) => p.status !== 200)).toEqual([]);
    expect(responses.filter((p) => p.status !== 200)).toEqual([]);
    expect(miss.status).toBe(503);
    expect(missMs).toBeLessThan(6_000);
    // Not ready while down, ready again after.
    expect(downProbes.length).toBeGreaterThan(3);
    expect(downProbes.filter((p) => p.status !== 503)).toEqual([]);
    // The LISTEN connection is back and carries revocations again.
    expect(listening, 'keytrail-listen did not reconnect').toBe(true);
    expect(
      revokedSeen,
      'a revocation NOTIFY after recovery did not reach the cache within 1.5 s',
    ).toBe(true);
    // The buffer stayed bounded and overflowed during the outage; its drops are counted.
    expect(outage.length).toBeGreaterThan(BUFFER_MAX);
    expect(summary.maxBuffer).toBeLessThanOrEqual(BUFFER_MAX);
    expect(settled.dropped).toBeGreaterThan(0);
    // Buffered events of the outage arrived after recovery.
    expect(summary.outageEventsIngested).toBeGreaterThan(0);
    // Nothing lost uncounted, nothing counted twice.
    expect(settled.raw.distinctRows).toBe(settled.raw.rows);
    expect(settled.raw.distinctIds).toBe(settled.raw.rows);
    expect(settled.raw.rows + settled.dropped).toBe(answered);
    expect(await rollupMismatches(db, org.orgId)).toEqual([]);
  }, 120_000);
});
