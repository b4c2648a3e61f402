/**
 * SPEC §9: "Worker killed (SIGKILL) at random points during ingest: final aggregates exactly
 * equal the events sent; no duplicate raw rows." The workers are real `keytrail worker`
 * processes; the API under test runs no worker in-process. A known set of events goes in both
 * ways (reported through POST /usage-events, some batches sent twice; request-path events from
 * requireKey), while workers are SIGKILLed at random moments and replaced.
 *
 * A killed worker's active jobs are only handed out again once pg-boss's supervisor (in a
 * surviving worker) expires them, so the run is bounded: everything must be ingested within
 * INGEST_BOUND_MS of the last kill. That bound is what "retried in seconds" means here.
 */
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../src/testing/harness.ts';
import { createKey, createOrg, type TestKey } from '../src/testing/factories.ts';
import { storedLatency } from '../src/usage/usage.types.ts';
import {
  ingestQueueState,
  killHard,
  seededRandom,
  spawnWorker,
  stopGracefully,
  workersInIngest,
  type WorkerProcess,
} from './faults-workers.ts';
import { rawCountsByKey, rawIdentity, rollupMismatches, type KeyCounts } from './faults-rollups.ts';

const SEED = Number(process.env.FAULTS_SEED ?? Date.now() % 1_000_000);
const random = seededRandom(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo));

const KILL_ROUNDS = 6;
const REPORTED_BATCHES = 30;
const MAX_REPORTED_BATCHES = 90;
const BATCH_EVENTS = 1000;
/** After the last kill and the last event sent, everything must be in within this. */
const INGEST_BOUND_MS = 30_000;
const WORKER_ENV = { KEYTRAIL_WORKER_BATCH_JOBS: '2', KEYTRAIL_WORKER_CONCURRENCY: '2' };

const dbUrl = useTestDatabase();
let app: TestApp;
const workers = new Set<WorkerProcess>();

beforeAll(async () => {
  app = await startTestApp(dbUrl(), {
    // Tracking on, no worker in this process: only the child processes ingest.
    config: { usage: { tracking: true, flushIntervalMs: 50, batchSize: 300, bufferMax: 100_000 } },
  });
});
afterAll(async () => {
  await Promise.all([...workers].map((w) => killHard(w)));
  await app?.close();
});

const zero = (): KeyCounts => ({ requests: 0, e4xx: 0, e5xx: 0, denied: 0 });

/** What the client knows it caused, per key. */
class Tally {
  readonly byKey = new Map<string, KeyCounts>();
  /** key|route|status|outcome → events, for the request path. */
  readonly byRoute = new Map<string, number>();
  add(keyId: string, status: number, denied: boolean, route?: string): void {
    const c = this.byKey.get(keyId) ?? zero();
    if (denied) c.denied += 1;
    else {
      c.requests += 1;
      if (status >= 400 && status < 500) c.e4xx += 1;
      if (status >= 500) c.e5xx += 1;
    }
    this.byKey.set(keyId, c);
    if (route) {
      const id = `${keyId}|${route}|${status}|${denied ? 'revoked' : 'success'}`;
      this.byRoute.set(id, (this.byRoute.get(id) ?? 0) + 1);
    }
  }
  get events(): number {
    let n = 0;
    for (const c of this.byKey.values()) n += c.requests + c.denied;
    return n;
  }
}

type Reported = {
  event_id: string;
  key_id: string;
  occurred_at: string;
  method: string;
  route: string;
  status: number;
  latency_ms: number;
  outcome: 'success' | 'revoked' | 'expired';
};

function reportedBatch(keys: readonly TestKey[], now: number): Reported[] {
  return Array.from({ length: BATCH_EVENTS }, () => {
    // Spread over the last two days: several hourly and daily rollup rows per key.
    const at = now - between(0, 48 * 3_600_000);
    const roll = random();
    return {
      event_id: uuidv7({ msecs: at }),
      key_id: pick(keys).id,
      occurred_at: new Date(at).toISOString(),
      method: pick(['GET', 'POST']),
      route: pick(['/v1/alpha', '/v1/beta', '/v1/gamma/:id']),
      status: pick([200, 200, 200, 201, 404, 500]),
      latency_ms: Math.round(random() * 500_000) / 1000,
      outcome: roll < 0.03 ? 'revoked' : roll < 0.05 ? 'expired' : 'success',
    };
  });
}

describe('usage workers SIGKILLed at random moments during ingest', () => {
  it('end with aggregates exactly equal to the distinct events sent and no duplicate raw rows', async () => {
    const started = Date.now();
    const { client, kt } = app;
    const db = kt.database.db;
    const org = await createOrg(client, 'SIGKILL');
    const tally = new Tally();
    // Every request made with a key of the org is an event of the request path.
    const admin = (n = 1) => {
      for (let i = 0; i < n; i++) tally.add(org.adminKeyId, 201, false);
    };
    const writer = await createKey(client, org, { name: 'writer', scopes: ['events:write'] });
    const reportedKeys = await Promise.all(
      [0, 1, 2].map((i) => createKey(client, org, { name: `reported ${i}` })),
    );
    const requestKeys = await Promise.all(
      [0, 1, 2].map((i) => createKey(client, org, { name: `request ${i}` })),
    );
    const revoked = await createKey(client, org, { name: 'revoked' });
    admin(8);
    const first = await client.get('/v1/demo/orders/1', { key: revoked.key });
    expect(first.status).toBe(200);
    tally.add(revoked.id, 200, false, '/v1/demo/orders/:id');
    const revoke = await client.delete(`/api/orgs/${org.orgId}/api-keys/${revoked.id}`, {
      key: org.adminKey,
    });
    expect(revoke.status).toBe(200);
    tally.add(org.adminKeyId, 200, false);

    let spawned = 0;
    for (let i = 0; i < 2; i++) workers.add(spawnWorker(dbUrl(), `kt-w${++spawned}`, WORKER_ENV));
    await Promise.all([...workers].map((w) => w.ready));

    // Reported events: distinct ids; every fourth batch is sent twice (a gateway retry).
    const expected = new Map<string, Reported>();
    let sending = true;
    const report = async () => {
      const sent: Reported[][] = [];
      // Events keep coming until the last kill: every kill lands on a worker with work.
      for (
        let b = 0;
        sending && b < MAX_REPORTED_BATCHES && (b < REPORTED_BATCHES || killing);
        b++
      ) {
        const batch = reportedBatch(reportedKeys, Date.now());
        for (const e of batch) expected.set(e.event_id, e);
        sent.push(batch);
        const again = b % 4 === 3 ? [pick(sent)] : [];
        for (const events of [batch, ...again]) {
          const res = await client.post(`/api/orgs/${org.orgId}/usage-events`, {
            key: writer.key,
            body: { events },
          });
          expect(res.status, res.text).toBe(202);
          tally.add(writer.id, 202, false);
        }
        // A gateway's rhythm: the next report once the request path has served a random number
        // more requests (a condition, not a fixed time).
        const next = tally.events + between(10, 60);
        await waitFor(() => !sending || tally.events >= next, {
          timeoutMs: 10_000,
          intervalMs: 5,
        }).catch(() => undefined);
      }
    };
    // Request-path events: 200s, 404s and 500s with valid keys, 401s with the revoked key.
    const traffic = async () => {
      while (sending) {
        const key = pick([...requestKeys, revoked]);
        const [path, route, status] = pick([
          ['/v1/demo/orders/7', '/v1/demo/orders/:id', 200],
          ['/v1/demo/status/404', '/v1/demo/status/:code', 404],
          ['/v1/demo/status/500', '/v1/demo/status/:code', 500],
        ] as const);
        const res = await client.get(path, { key: key.key });
        expect(res.status).toBe(key === revoked ? 401 : status);
        tally.add(key.id, res.status, key === revoked, route);
      }
    };
    // Kills at random moments. Rounds 0 and 3 strike blind (a worker may be idle, fetching or
    // mid-batch); the others wait for a victim to be inside an ingest transaction, then strike
    // at a random statement of it (mid-COPY, mid-upsert, or committed but not yet completed in
    // pg-boss).
    // Rounds 2 and 5 (and a random quarter of the others) kill both workers at once.
    const kills: { round: number; killed: number; inBatch: number; at: number }[] = [];
    let killing = true;
    const killer = async () => {
      for (let round = 0; round < KILL_ROUNDS; round++) {
        await Promise.all([...workers].map((w) => w.ready));
        // Strike once the new workers have ingested a random amount more (not after a fixed
        // time): every kill lands while ingest is really under way.
        const before = (await rawIdentity(db, org.orgId)).rows;
        const more = between(200, 3000);
        await waitFor(async () => (await rawIdentity(db, org.orgId)).rows >= before + more, {
          timeoutMs: 10_000,
          intervalMs: 20,
        }).catch(() => undefined);
        const live = [...workers];
        const names = live.map((w) => w.name);
        let busy: string[] = [];
        if (round !== 0 && round !== 3) {
          busy = await waitFor(
            async () => {
              const found = await workersInIngest(db, names);
              return found.length > 0 ? found : null;
            },
            { timeoutMs: 5_000, intervalMs: 5 },
          ).catch(() => []);
          // The random moment itself: a random statement of the victim's transaction (the COPY,
          // one of the upserts, or whatever it runs now), if it gets there within 2 s.
          const phase = pick(['copy%', '%api_key_usage_totals%', '%api_key_usage_daily%', '%']);
          await waitFor(async () => (await workersInIngest(db, busy, phase)).length > 0, {
            timeoutMs: 2_000,
            intervalMs: 2,
          }).catch(() => undefined);
        }
        const both = round === 2 || round === 5 || random() < 0.25;
        const target = busy.length > 0 ? live.filter((w) => busy.includes(w.name)) : live;
        const victims = both ? live : [pick(target)];
        const inBatch = (
          await workersInIngest(
            db,
            victims.map((w) => w.name),
          )
        ).length;
        await Promise.all(victims.map((w) => killHard(w)));
        kills.push({ round, killed: victims.length, inBatch, at: Date.now() - started });
        for (const w of victims) {
          workers.delete(w);
          workers.add(spawnWorker(dbUrl(), `kt-w${++spawned}`, WORKER_ENV));
        }
      }
      await Promise.all([...workers].map((w) => w.ready));
      killing = false;
    };
    // A failing loop stops the others (no stray requests after the test has failed).
    const loop = (run: () => Promise<void>) =>
      run().catch((error: unknown) => {
        sending = false;
        killing = false;
        throw error;
      });
    const reporting = loop(report).finally(() => (sending = false));
    await Promise.all([reporting, loop(traffic), loop(traffic), loop(traffic), loop(killer)]);
    const sendAndKillMs = Date.now() - started;

    // The request path's buffer is flushed by the app's own timer (no worker here).
    await waitFor(() => kt.usage.buffer.size === 0, { timeoutMs: 5_000 });
    const total = expected.size + tally.events;
    const settleStarted = Date.now();
    const settled = await waitFor(
      async () => {
        const raw = await rawIdentity(db, org.orgId);
        const queue = await ingestQueueState(db);
        const idle = queue.created + queue.retry + queue.active === 0;
        return raw.rows >= total && idle ? { raw, queue } : null;
      },
      { timeoutMs: INGEST_BOUND_MS, intervalMs: 250 },
    ).catch(async (error: unknown) => {
      const raw = await rawIdentity(db, org.orgId);
      const queue = await ingestQueueState(db);
      throw new Error(
        `not everything ingested within ${INGEST_BOUND_MS} ms of the last kill (seed ${SEED}): ` +
          `${raw.rows}/${total} raw rows; usage.ingest jobs ${JSON.stringify(queue)}. ` +
          `Jobs a killed worker held stay 'active' until started_on + expire_seconds ` +
          `(${queue.expireSeconds ?? '?'} s) and a supervise pass of a live worker fails them ` +
          `for retry. Kills: ${JSON.stringify(kills)}. (${String(error)})`,
      );
    });
    const settleMs = Date.now() - settleStarted;

    // No raw row twice, and exactly the events the client caused.
    expect(settled.raw.rows).toBe(total);
    expect(settled.raw.distinctRows).toBe(settled.raw.rows);
    expect(settled.raw.distinctIds).toBe(settled.raw.rows);
    const { rows: ids } = await sql<{ event_id: string }>`
        select event_id from api_key_usage_events
        where org_id = ${org.orgId} and key_id in (${sql.join(reportedKeys.map((k) => k.id))})`.execute(
      db,
    );
    const stored = new Set(ids.map((r) => r.event_id));
    expect(stored.size).toBe(expected.size);
    expect([...expected.keys()].filter((id) => !stored.has(id))).toEqual([]);

    // Per key: what the raw rows hold equals what was sent, and so do the totals.
    const want = new Map(tally.byKey);
    for (const e of expected.values()) {
      const c = want.get(e.key_id) ?? zero();
      if (e.outcome !== 'success') c.denied += 1;
      else {
        c.requests += 1;
        if (e.status >= 400 && e.status < 500) c.e4xx += 1;
        if (e.status >= 500) c.e5xx += 1;
      }
      want.set(e.key_id, c);
    }
    const raw = await rawCountsByKey(db, org.orgId);
    const { rows: totals } = await sql<KeyCounts & { key_id: string }>`
        select key_id, request_count::int as requests, errors_4xx::int as "e4xx",
          errors_5xx::int as "e5xx", denied_count::int as denied
        from api_key_usage_totals where org_id = ${org.orgId}`.execute(db);
    const totalsByKey = new Map(totals.map(({ key_id, ...c }) => [key_id, c]));
    for (const [keyId, c] of want) {
      expect(raw.get(keyId), `raw rows of key ${keyId}`).toEqual(c);
      expect(totalsByKey.get(keyId), `api_key_usage_totals of key ${keyId}`).toEqual(c);
    }
    expect([...totalsByKey.keys()].sort()).toEqual([...want.keys()].sort());

    // Reported latencies are known exactly: the daily rollups' latency sums must match them.
    const { rows: daily } = await sql<{ key_id: string; latency: number; requests: number }>`
        select key_id, sum(latency_sum_ms)::float8 as latency, sum(requests)::int as requests
        from api_key_usage_daily where org_id = ${org.orgId}
          and key_id in (${sql.join(reportedKeys.map((k) => k.id))}) group by key_id`.execute(db);
    for (const k of reportedKeys) {
      const sent = [...expected.values()].filter(
        (e) => e.key_id === k.id && e.outcome === 'success',
      );
      const latency = sent.reduce((s, e) => s + storedLatency(e.latency_ms), 0);
      const row = daily.find((d) => d.key_id === k.id);
      expect(row?.requests).toBe(sent.length);
      expect(row?.latency).toBeCloseTo(latency, 3);
    }

    // The request path per route and status.
    const { rows: routes } = await sql<{ id: string; n: number }>`
        select key_id || '|' || route || '|' || status || '|' || outcome as id, count(*)::int as n
        from api_key_usage_events
        where org_id = ${org.orgId}
          and key_id in (${sql.join([...requestKeys, revoked].map((k) => k.id))})
        group by 1`.execute(db);
    expect(new Map(routes.map((r) => [r.id, r.n]))).toEqual(tally.byRoute);

    // Every rollup (totals, hourly, daily, routes) equals what the raw rows imply.
    expect(await rollupMismatches(db, org.orgId)).toEqual([]);

    // The kills did catch workers holding jobs: some jobs were handed out more than once.
    const queue = await ingestQueueState(db);
    expect(queue.deadLettered).toBe(0);
    expect(queue.failed).toBe(0);
    expect(kills.length).toBeGreaterThanOrEqual(5);
    expect(kills.some((k) => k.killed === 2)).toBe(true);
    expect(
      kills.filter((k) => k.inBatch > 0).length,
      `no kill caught a worker inside an ingest transaction (seed ${SEED})`,
    ).toBeGreaterThan(0);
    expect(queue.retried, `no job was handed out twice (seed ${SEED})`).toBeGreaterThan(0);

    await Promise.all([...workers].map((w) => stopGracefully(w)));
    for (const w of workers) expect(w.child.exitCode, w.tail()).toBe(0);
    workers.clear();
    console.log(
      `[worker-sigkill] seed ${SEED}: ${total} events (${expected.size} reported, ${tally.events} request path), ` +
        `${kills.length} kill rounds ${JSON.stringify(kills)}, ${queue.retried} jobs retried; ` +
        `send+kill ${sendAndKillMs} ms, settle ${settleMs} ms, total ${Date.now() - started} ms`,
    );
    // What is bounded is the settling (INGEST_BOUND_MS after the last kill). The whole run is
    // six rounds of spawning worker processes, each waiting for a condition of up to 17 s: under
    // CI's coverage and parallel files it passed 120 s once.
  }, 300_000);
});
