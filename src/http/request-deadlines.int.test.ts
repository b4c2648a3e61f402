/**
 * SPEC §9: every statement a request starts has a deadline and is cancelled when the client
 * leaves; one org's expensive reads take at most its share, so other orgs' authentications, key
 * changes and ingest keep their connections. Reads are made slow at will by a lock this test
 * holds on the raw-event table (a wide scan, without millions of rows).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker } from '../../workers/main.ts';
import {
  startTestApp,
  useTestApp,
  useTestDatabase,
  waitFor,
  type TestApp,
} from '../testing/harness.ts';
import { createKey, createOrg, reportEvents, type TestOrg } from '../testing/factories.ts';
import { expectProblem } from '../testing/problem.ts';

const READS = {
  poolSize: 4,
  statementTimeoutMs: 60_000,
  perOrg: 2,
  queuePerOrg: 4,
  waitMs: 30_000,
};
const app = useTestApp({ config: { reads: READS } });

let hammer: TestOrg;
let quiet: TestOrg;
beforeAll(async () => {
  hammer = await createOrg(app().client, 'Hammering org');
  quiet = await createOrg(app().client, 'Quiet org');
});

/** A connection holding `lock table … in access exclusive mode` until `release()`. */
async function lockTable(url: string, table: string) {
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  await holder.query('begin');
  await holder.query(`lock table ${table} in access exclusive mode`);
  return {
    async release() {
      await holder.query('rollback');
      await holder.end();
    },
  };
}

/** Backends of `application` (pids): running a statement, or all of them. */
async function backends(
  url: string,
  application: string,
  which: 'active' | 'any' = 'active',
): Promise<number[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      `select pid from pg_stat_activity
        where application_name = $1 and datname = current_database()
          and ($2 = 'any' or state = 'active')`,
      [application, which],
    );
    return rows.map((r) => r.pid);
  } finally {
    await client.end();
  }
}

const activeBackends = async (url: string, application: string) =>
  (await backends(url, application)).length;

const pagePath = (org: TestOrg, extra = '') =>
  `/api/orgs/${org.orgId}/usage-events?from=2020-01-01T00:00:00Z&route=/nothing${extra}`;

/** Starts a request the test can abandon mid-flight (its socket closed, as a client leaving). */
function abandonable(path: string, key: string, init: RequestInit = {}) {
  const controller = new AbortController();
  const done = fetch(`${app().baseUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    signal: controller.signal,
  }).catch(() => 'aborted');
  return { leave: () => controller.abort(), done };
}

describe('a client that leaves', () => {
  it('has its raw-event page statement cancelled at once, not left to run', async () => {
    const url = app().kt.config.databaseUrl;
    const lock = await lockTable(url, 'api_key_usage_events');
    try {
      const request = abandonable(pagePath(quiet), quiet.adminKey);
      const [pid] = (await waitFor(async () => {
        const pids = await backends(url, 'keytrail-reads');
        return pids.length === 1 && pids;
      })) as number[];
      request.leave();
      await request.done;
      // The lock is still held: only a cancel ends the statement before its 60 s deadline, and
      // the cancelled connection is closed, not pooled (a late cancel must hit nobody else).
      await waitFor(async () => !(await backends(url, 'keytrail-reads', 'any')).includes(pid ?? 0));
      await waitFor(() =>
        app().logs.join('').includes('client left; its statements were cancelled'),
      );
    } finally {
      await lock.release();
    }
    // Its slot and connection came back: the org reads again.
    const again = await app().client.get(pagePath(quiet), { key: quiet.adminKey });
    expect(again.status).toBe(200);
  });

  it('has its CSV export COPY cancelled at once, not left scanning', async () => {
    const url = app().kt.config.databaseUrl;
    const lock = await lockTable(url, 'api_key_usage_events');
    try {
      const request = abandonable(pagePath(quiet, '&format=csv'), quiet.adminKey);
      await waitFor(async () => (await activeBackends(url, 'keytrail-export')) === 1);
      request.leave();
      await request.done;
      await waitFor(async () => (await activeBackends(url, 'keytrail-export')) === 0);
    } finally {
      await lock.release();
    }
    await waitFor(() => app().kt.exportSlots.used === 0);
  });
});

describe('a client that leaves a request with a body', () => {
  it('has the statement of its key change cancelled at once', async () => {
    const url = app().kt.config.databaseUrl;
    const k = await createKey(app().client, quiet);
    const lock = await lockTable(url, 'api_keys');
    try {
      const request = abandonable(`/api/orgs/${quiet.orgId}/api-keys/${k.id}`, quiet.adminKey, {
        method: 'PATCH',
        body: JSON.stringify({ name: 'renamed' }),
      });
      const [pid] = (await waitFor(async () => {
        const pids = await backends(url, 'keytrail');
        return pids.length === 1 && pids;
      })) as number[];
      request.leave();
      await request.done;
      await waitFor(async () => !(await backends(url, 'keytrail', 'any')).includes(pid ?? 0));
    } finally {
      await lock.release();
    }
    const key = await app().client.get(`/api/orgs/${quiet.orgId}/api-keys/${k.id}`, {
      key: quiet.adminKey,
    });
    expect(key.body.name).toBe('test key');
  });
});

describe('one org hammering expensive reads', () => {
  it('holds one read connection per request, so its key-usage reads leave others room', async () => {
    const url = app().kt.config.databaseUrl;
    const k = await createKey(app().client, hammer);
    const lock = await lockTable(
      url,
      'api_key_usage_events, api_key_usage_hourly, api_key_usage_daily, api_key_usage_routes_daily',
    );
    // A key-usage answer is six queries, four of which block here: run at once, two such reads
    // would take every connection of the reads pool.
    const reads = Array.from({ length: 3 }, () =>
      app().client.get(`/api/orgs/${hammer.orgId}/api-keys/${k.id}/usage`, {
        key: hammer.adminKey,
      }),
    );
    try {
      await waitFor(async () => (await activeBackends(url, 'keytrail-reads')) === READS.perOrg);
      const quietPage = app().client.get(pagePath(quiet), { key: quiet.adminKey });
      await waitFor(async () => (await activeBackends(url, 'keytrail-reads')) === 3);
      expect(app().kt.readsDatabase.pool.waitingCount).toBe(0);
      await lock.release();
      expect((await quietPage).status).toBe(200);
    } finally {
      await lock.release().catch(() => undefined);
    }
    for (const res of await Promise.all(reads)) expect(res.status).toBe(200);
  });

  it('runs at most its share while another org authenticates, changes keys and reads', async () => {
    const url = app().kt.config.databaseUrl;
    const lock = await lockTable(url, 'api_key_usage_events');
    let hammering: Promise<{ status: number; retryAfter: string | null }[]> | undefined;
    try {
      // 16 pages at once, more than the request pool's 10 connections.
      hammering = Promise.all(
        Array.from({ length: 16 }, () =>
          app()
            .client.get(pagePath(hammer), { key: hammer.adminKey })
            .then((r) => ({ status: r.status, retryAfter: r.headers.get('retry-after') })),
        ),
      );
      await waitFor(async () => (await activeBackends(url, 'keytrail-reads')) === READS.perOrg);
      await waitFor(() => app().kt.readGate.waiting === READS.queuePerOrg);

      // The other org: its own read share, and the request pool untouched by the hammering.
      const quietPage = app().client.get(pagePath(quiet), { key: quiet.adminKey });
      await waitFor(async () => (await activeBackends(url, 'keytrail-reads')) === 3);
      const created = await createKey(app().client, quiet, { scopes: ['orders:read'] });
      const firstUse = await app().client.get('/v1/demo/orders/1', { key: created.key });
      expect(firstUse.status).toBe(200);
      const revoked = await app().client.delete(`/api/orgs/${quiet.orgId}/api-keys/${created.id}`, {
        key: quiet.adminKey,
        body: { reason: 'test' },
      });
      expect(revoked.status).toBe(200);
      // Still blocked: the quiet org's work above did not wait for the hammering to end.
      expect(await activeBackends(url, 'keytrail-reads')).toBe(3);
      await lock.release();
      expect((await quietPage).status).toBe(200);
    } finally {
      await lock.release().catch(() => undefined);
    }
    const answers = (await hammering) ?? [];
    const ok = answers.filter((a) => a.status === 200).length;
    const refused = answers.filter((a) => a.status === 429);
    expect(ok).toBe(READS.perOrg + READS.queuePerOrg);
    expect(refused).toHaveLength(16 - ok);
    for (const r of refused) expect(r.retryAfter).toBe('1');
    const metrics = (await app().client.get('/metrics')).text;
    expect(metrics).toMatch(/keytrail_reads_refused_total\{reason="queue_full"\} [1-9]/);
    expect(metrics).toMatch(/keytrail_db_cancels_total\{result="sent"\} [1-9]/);
  });

  it('refuses a read beyond the queue with problem+json naming the share', async () => {
    const url = app().kt.config.databaseUrl;
    const lock = await lockTable(url, 'api_key_usage_events');
    const blocked = Array.from({ length: READS.perOrg + READS.queuePerOrg }, () =>
      app().client.get(pagePath(hammer), { key: hammer.adminKey }),
    );
    try {
      await waitFor(() => app().kt.readGate.waiting === READS.queuePerOrg);
      const refused = await app().client.get(`/api/orgs/${hammer.orgId}/audit-events`, {
        key: hammer.adminKey,
      });
      expectProblem(refused, 429, 'rate_limited');
      expect(refused.body.detail).toContain('expensive reads at once');
    } finally {
      await lock.release();
    }
    for (const res of await Promise.all(blocked)) expect(res.status).toBe(200);
  });
});

describe('ingest', () => {
  it('runs on connections of its own while every request connection is held', async () => {
    const writer = await createKey(app().client, quiet, { scopes: ['events:write'] });
    const target = await createKey(app().client, quiet, { scopes: ['orders:read'] });
    await app().client.get('/v1/demo/orders/1', { key: writer.key }); // cached before the hold
    const at = new Date().toISOString();
    // Accepted (queued) before the hold; the worker starts while the request pool is all taken.
    await reportEvents(app().client, quiet, writer.key, [
      { key_id: target.id, occurred_at: at },
      { key_id: target.id, occurred_at: at },
    ]);
    const pool = app().kt.database.pool;
    const held = await Promise.all(
      Array.from({ length: app().kt.config.dbPoolSize }, () => pool.connect()),
    );
    const worker = await startWorker(app().kt);
    try {
      const ingested = async () => {
        const { rows } = await app().kt.ingestDatabase.pool.query<{ n: number }>(
          'select count(*)::int as n from api_key_usage_events where key_id = $1',
          [target.id],
        );
        return rows[0]?.n === 2;
      };
      await waitFor(ingested, { timeoutMs: 20_000 });
    } finally {
      for (const client of held) client.release();
      await worker.stop();
    }
  });
});

describe('statement deadlines', () => {
  const dbUrl = useTestDatabase();
  let fast: TestApp;
  let org: TestOrg;
  beforeAll(async () => {
    fast = await startTestApp(dbUrl(), {
      config: { statementTimeoutMs: 2_500, reads: { ...READS, statementTimeoutMs: 2_500 } },
    });
    org = await createOrg(fast.client, 'Deadlines');
  });
  afterAll(async () => fast.close());

  it('answers 503 query_timeout when a raw-event page runs past its deadline', async () => {
    const lock = await lockTable(dbUrl(), 'api_key_usage_events');
    try {
      const res = await fast.client.get(pagePath(org), { key: org.adminKey });
      expectProblem(res, 503, 'query_timeout');
      expect(res.headers.get('retry-after')).toBe('5');
      expect(res.body.detail).toContain('narrow the time range');
    } finally {
      await lock.release();
    }
    expect((await fast.client.get(pagePath(org), { key: org.adminKey })).status).toBe(200);
  });

  it('answers 503 query_timeout when a key change waits past the request deadline', async () => {
    const k = await createKey(fast.client, org);
    const lock = await lockTable(dbUrl(), 'api_keys');
    try {
      const res = await fast.client.patch(`/api/orgs/${org.orgId}/api-keys/${k.id}`, {
        key: org.adminKey,
        body: { name: 'renamed' },
      });
      expectProblem(res, 503, 'query_timeout');
    } finally {
      await lock.release();
    }
  });
});
