import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker } from '../../workers/main.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import {
  createKey,
  createOrg,
  usageEvent,
  usageJobsFor,
  type TestOrg,
} from '../testing/factories.ts';
import { TEST_PEPPER } from '../testing/leak-scan.ts';
import { sendJob } from '../platform/queue.ts';
import { UsageBuffer } from './usage.buffer.ts';
import { packEvents, USAGE_INGEST_QUEUE } from './usage.jobs.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let org: TestOrg;

beforeAll(async () => {
  // A flush window long enough that only a full batch triggers a flush.
  app = await startTestApp(dbUrl(), {
    config: {
      usage: { tracking: true, flushIntervalMs: 60_000, batchSize: 1000, bufferMax: 100_000 },
    },
  });
  org = await createOrg(app.client, 'Buffer');
});
afterAll(async () => app.close());

const jobsFor = (keyId: string) => usageJobsFor(app.kt.database.db, keyId);
const eventsOf = async (keyId: string) => {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from api_key_usage_events
    where key_id = ${keyId}`.execute(app.kt.database.db);
  return rows[0]?.n ?? 0;
};

describe('request path', () => {
  it('sends 1,000 requests as a handful of jobs and runs no statement per request', async () => {
    const k = await createKey(app.client, org);
    await app.client.get('/v1/demo/orders/0', { key: k.key });
    const statements = app.kt.database.stats.count;
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const res = await fetch(`${app.baseUrl}/v1/demo/orders/${round * 50 + i}`, {
            headers: { authorization: `Bearer ${k.key}` },
          });
          await res.arrayBuffer();
        }),
      );
    }
    // The database saw no statement from 1,000 authenticated, tracked requests.
    expect(app.kt.database.stats.count - statements).toBe(0);
    await app.kt.usage.buffer.flush();
    await app.kt.usage.buffer.flush();
    expect(app.kt.usage.buffer.size).toBe(0);
    const jobs = await jobsFor(k.id);
    expect(jobs).toBeGreaterThanOrEqual(1);
    expect(jobs).toBeLessThanOrEqual(3);
    expect(await eventsOf(k.id)).toBe(0);
  });
});

describe('data_as_of', () => {
  it('stays behind the oldest usage job no worker has taken yet', async () => {
    const k = await createKey(app.client, org);
    await app.client.get('/v1/demo/orders/1', { key: k.key });
    await app.kt.usage.buffer.flush();
    const { rows } = await sql<{ at: Date }>`select min(created_on) as at from pgboss.job
      where name = ${USAGE_INGEST_QUEUE} and state < 'active'`.execute(app.kt.database.db);
    const pendingSince = rows[0]?.at;
    expect(pendingSince).toBeInstanceOf(Date);
    const res = await app.client.get(`/api/orgs/${org.orgId}/api-keys/usage`, {
      key: org.adminKey,
    });
    expect(Date.parse(res.body.data_as_of)).toBeLessThan(pendingSince?.getTime() ?? 0);
  });
});

describe('data_as_of: what is not ingested yet', () => {
  const asOf = async () =>
    Date.parse(
      (await app.client.get(`/api/orgs/${org.orgId}/api-keys/usage`, { key: org.adminKey })).body
        .data_as_of,
    );

  it('stays behind the events of a job, not its creation: a batch that waited in a buffer', async () => {
    const k = await createKey(app.client, org);
    // Events from 10 minutes ago, queued only now (the queue was unreachable meanwhile).
    const waited = Date.now() - 600_000;
    const job = await packEvents([
      usageEvent({ orgId: org.orgId, keyId: k.id, occurredAt: waited }, 0),
      usageEvent({ orgId: org.orgId, keyId: k.id, occurredAt: waited + 5000 }, 1),
    ]);
    expect(job.since).toBe(waited);
    const boss = await app.kt.queue();
    const id = await sendJob(boss, USAGE_INGEST_QUEUE, job);
    try {
      expect(await asOf()).toBeLessThan(waited);
    } finally {
      await boss.deleteJob(USAGE_INGEST_QUEUE, id);
    }
  });

  it('counts a job a worker holds (or held when it was killed) as not ingested', async () => {
    const k = await createKey(app.client, org);
    const boss = await app.kt.queue();
    const before = Date.now();
    await sendJob(
      boss,
      USAGE_INGEST_QUEUE,
      await packEvents([
        usageEvent({ orgId: org.orgId, keyId: k.id, occurredAt: before - 300_000 }, 0),
      ]),
    );
    // Taken and never finished: what a SIGKILLed worker leaves behind until its heartbeat expires.
    const taken = await boss.fetch(USAGE_INGEST_QUEUE, { batchSize: 100 });
    expect(taken.length).toBeGreaterThan(0);
    try {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pgboss.job
        where name = ${USAGE_INGEST_QUEUE} and state < 'active'`.execute(app.kt.database.db);
      expect(rows[0]?.n).toBe(0); // nothing waiting: only active jobs hold data_as_of back
      // Held back to the taken job's events (5 minutes old), not just the 60 s flush window.
      expect(await asOf()).toBeLessThan(before - 200_000);
    } finally {
      await boss.deleteJob(
        USAGE_INGEST_QUEUE,
        taken.map((j) => j.id),
      );
    }
  });
});

describe('buffer with the queue unreachable', () => {
  it('keeps events up to its bound, counts every dropped one, and delivers the rest on recovery', async () => {
    const k = await createKey(app.client, org);
    let reachable = false;
    const boss = await app.kt.queue();
    const buffer = new UsageBuffer(
      async (payload) => {
        if (!reachable) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
        await sendJob(boss, USAGE_INGEST_QUEUE, payload);
      },
      { flushIntervalMs: 20, maxBatch: 100, maxBuffered: 500, maxBackoffMs: 50 },
      app.kt.logger,
    );
    const base = Date.now();
    for (let i = 0; i < 800; i++) {
      buffer.record(usageEvent({ orgId: org.orgId, keyId: k.id, occurredAt: base + i }, i));
    }
    await waitFor(() => buffer.stats.failures >= 3);
    expect(buffer.stats.dropped).toBe(300);
    expect(buffer.size).toBe(500);
    reachable = true;
    await waitFor(() => buffer.size === 0, { timeoutMs: 5_000 });
    await buffer.stop();
    expect(buffer.stats.enqueued).toBe(500);
    expect(buffer.stats.dropped).toBe(300);
    const worker = await startWorker(app.kt);
    try {
      await waitFor(async () => (await eventsOf(k.id)) === 500, { timeoutMs: 10_000 });
    } finally {
      await worker.stop();
    }
  });
});

describe('graceful shutdown', () => {
  it('flushes on SIGTERM: every answered request’s event reaches the table', async () => {
    const k = await createKey(app.client, org);
    const child = spawn(process.execPath, ['bin/keytrail.ts', 'serve', '--no-worker'], {
      env: {
        ...process.env,
        DATABASE_URL: dbUrl(),
        KEYTRAIL_KEY_PEPPER: TEST_PEPPER,
        KEYTRAIL_DEMO_ROUTES: 'true',
        KEYTRAIL_USAGE_FLUSH_INTERVAL_MS: '60000',
        KEYTRAIL_LOG_LEVEL: 'warn',
        PORT: '0',
        HOST: '127.0.0.1',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const line = await new Promise<string>((resolve) =>
      createInterface({ input: child.stdout }).on(
        'line',
        (l) => l.includes('listening') && resolve(l),
      ),
    );
    const base = /listening on (\S+)/.exec(line)?.[1]?.replace('localhost', '127.0.0.1') ?? '';
    for (let i = 0; i < 120; i++) {
      const res = await fetch(`${base}/v1/demo/orders/${i}`, {
        headers: { authorization: `Bearer ${k.key}` },
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await jobsFor(k.id)).toBeGreaterThanOrEqual(1);
    const worker = await startWorker(app.kt);
    try {
      await waitFor(async () => (await eventsOf(k.id)) === 120, { timeoutMs: 10_000 });
    } finally {
      await worker.stop();
    }
  });
});
