/**
 * Scenario 2 — ingest (§8): N events through buffer → pg-boss → worker → partitioned table +
 * rollups, against a raw COPY of the same rows into the same table, same database, same run.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sql } from 'kysely';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { v7 as uuidv7 } from 'uuid';
import { createKeytrail } from '../src/keytrail.ts';
import type { UsageEvent } from '../src/usage/usage.types.ts';
import { clusterCpuUs, cpuUs, postmasterPid } from './cpu.ts';
import { benchConfig, child, fmt, kysely, quick, type Section } from './lib.ts';

export async function makeKeys(
  url: string,
  orgName: string,
  count: number,
): Promise<{ orgId: string; keyIds: string[] }> {
  const kt = createKeytrail(benchConfig(url));
  const { org } = await kt.orgs.create(orgName);
  await kt.close();
  const db = kysely(url);
  const { rows } = await sql<{ id: string }>`
    insert into api_keys (id, org_id, name, environment, prefix, key_hash, scopes, created_at)
    select gen_random_uuid(), ${org.id}, 'bench ' || i, 'live', 'sk_live_b' || lpad(i::text, 7, '0'),
           decode(md5(${org.id} || i) || md5(i || ${org.id}), 'hex'), '{}', now() - interval '120 days'
    from generate_series(1, ${count}) as i
    returning id`.execute(db);
  await db.destroy();
  return { orgId: org.id, keyIds: rows.map((r) => r.id) };
}

/** `n` events over `keyIds` in turn, spread over the last hour (also bench/worker-steps.ts). */
export function generate(orgId: string, keyIds: string[], n: number): UsageEvent[] {
  const now = Date.now();
  const random = randomBytes(16 * n);
  const routes = ['/v1/orders/:id', '/v1/orders', '/v1/customers/:id', '/v1/invoices/:id/pay'];
  return Array.from({ length: n }, (_, i) => {
    const occurredAt = now - 3_600_000 + Math.floor((i * 3_000_000) / n);
    return {
      eventId: uuidv7({ msecs: occurredAt, random: random.subarray(16 * i, 16 * i + 16) }),
      orgId,
      keyId: keyIds[i % keyIds.length] ?? '',
      occurredAt,
      method: i % 4 === 0 ? 'POST' : 'GET',
      route: routes[i % routes.length] ?? '/',
      status: i % 50 === 0 ? 500 : i % 20 === 0 ? 404 : 200,
      latencyMs: Math.fround(((i * 7919) % 5000) / 100),
      ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      userAgent: 'bench-client/1.0',
      outcome: 'success',
    };
  });
}

const copyLine = (e: UsageEvent): string =>
  `${e.eventId}\t${e.orgId}\t${e.keyId}\t${new Date(e.occurredAt).toISOString()}\t${e.method}\t${e.route}\t${e.status}\t${e.latencyMs}\t${e.ip ?? '\\N'}\t${e.userAgent ?? '\\N'}\t${e.outcome}\n`;

/** CPU of the run (µs): Postgres (its whole cluster) and, for the pipeline, the worker process. */
type Run = { seconds: number; postgresUs: number; workerUs: number };
const clusterOf = (postmaster: number | undefined) => () =>
  postmaster === undefined ? Number.NaN : clusterCpuUs(postmaster);

async function copyRows(url: string, events: UsageEvent[], pgCpu: () => number): Promise<Run> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const pgBefore = pgCpu();
  const started = performance.now();
  const stream = client.query(
    copyFrom(`copy api_key_usage_events (event_id, org_id, key_id, occurred_at, method, route, status,
      latency_ms, ip, user_agent, outcome) from stdin`),
  );
  function* lines() {
    for (let i = 0; i < events.length; i += 5000)
      yield events
        .slice(i, i + 5000)
        .map(copyLine)
        .join('');
  }
  await pipeline(Readable.from(lines()), stream);
  const seconds = (performance.now() - started) / 1000;
  const postgresUs = pgCpu() - pgBefore;
  await client.end();
  return { seconds, postgresUs, workerUs: 0 };
}

async function truncateUsage(url: string): Promise<void> {
  const db = kysely(url);
  await sql`truncate api_key_usage_events, api_key_usage_totals, api_key_usage_hourly, api_key_usage_daily,
    api_key_usage_routes_daily`.execute(db);
  await db.destroy();
}

const startWorker = (url: string) =>
  child(
    process.env.BENCH_WORKER_PROF ? '--cpu-prof' : 'bin/keytrail.ts',
    process.env.BENCH_WORKER_PROF
      ? ['--cpu-prof-dir=/tmp/wprof', 'bin/keytrail.ts', 'worker']
      : ['worker'],
    {
      DATABASE_URL: url,
      KEYTRAIL_KEY_PEPPER: 'x'.repeat(40),
      KEYTRAIL_LOG_LEVEL: 'warn',
      KEYTRAIL_WORKER_METRICS_PORT: '0',
    },
  );

/**
 * The pipeline, timed until every event is counted. `split`: the events are all queued first and
 * the worker starts after, so Postgres's CPU is read for each half (`enqueueUs`: sending the jobs).
 */
export async function pipelineRun(
  url: string,
  orgId: string | readonly string[],
  events: UsageEvent[],
  pgCpu: () => number,
  split = false,
): Promise<Run & { enqueueUs: number }> {
  let worker = split ? undefined : await startWorker(url);
  const base = benchConfig(url);
  const kt = createKeytrail({ ...base, usage: { ...base.usage, bufferMax: events.length + 1 } });
  await kt.ready();
  const db = kysely(url, 1);
  const workerCpu = () => (worker?.proc.pid === undefined ? 0 : cpuUs(worker.proc.pid));
  // From here on: the worker has started (its start-up is not ingest work).
  let workerBefore = workerCpu();
  const pgBefore = pgCpu();
  const started = performance.now();
  for (let i = 0; i < events.length; i++) {
    kt.usage.buffer.record(events[i] as UsageEvent);
    // Yield now and then so flushes run while events keep coming, as under real traffic.
    if (i % 5000 === 4999) await new Promise((resolve) => setImmediate(resolve));
  }
  while (kt.usage.buffer.size > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  const enqueueUs = pgCpu() - pgBefore;
  if (!worker) {
    worker = await startWorker(url);
    workerBefore = workerCpu();
  }
  if (process.env.BENCH_DEBUG)
    process.stderr.write(
      `enqueued all in ${((performance.now() - started) / 1000).toFixed(2)} s\n`,
    );
  for (;;) {
    const { rows } = await sql<{ n: number }>`select coalesce(sum(request_count), 0)::int8 as n
      from api_key_usage_totals where org_id = any(${[orgId].flat()}::uuid[])`.execute(db);
    if (Number(rows[0]?.n) >= events.length) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const seconds = (performance.now() - started) / 1000;
  const run = {
    seconds,
    postgresUs: pgCpu() - pgBefore,
    workerUs: workerCpu() - workerBefore,
    enqueueUs,
  };
  await db.destroy();
  await kt.close();
  await worker.stop();
  return run;
}

export async function ingestScenario(url: string): Promise<Section> {
  const n = quick ? 200_000 : 1_000_000;
  const { orgId, keyIds } = await makeKeys(url, 'bench-ingest', 1000);
  const events = generate(orgId, keyIds, n);
  const check = kysely(url, 1);
  const pgCpu = clusterOf(await postmasterPid(check));
  const copy = await copyRows(url, events, pgCpu);
  await truncateUsage(url);
  const pipe = await pipelineRun(url, orgId, events, pgCpu);
  const { rows } = await sql<{
    n: number;
  }>`select count(*)::int as n from api_key_usage_events`.execute(check);
  // On disk: the events' partitions with their indexes (the rollups are a few rows per key).
  const { rows: size } = await sql<{
    bytes: string;
  }>`select sum(pg_total_relation_size(relid))::int8 as bytes
    from pg_partition_tree('api_key_usage_events')`.execute(check);
  await check.destroy();
  // Where Postgres's extra goes: a fifth of the events again, queued first, then ingested.
  await truncateUsage(url);
  const part = events.slice(0, n / 5);
  const split = await pipelineRun(url, orgId, part, pgCpu, true);
  const ratio = copy.seconds / pipe.seconds;
  const workerPerEvent = pipe.workerUs / n;
  const pgRatio = pipe.postgresUs / copy.postgresUs;
  const us = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
  return {
    title: '2. Ingest',
    lines: [
      `${fmt(n)} events over 1,000 keys, the same rows both ways. Pipeline: in-process buffer (5,000 events per job) → pg-boss → one \`keytrail worker\` process (2 local workers × 8 jobs per fetch) → events + totals + hourly + daily + route rollups in one transaction per batch, timed until every event is counted in the totals. COPY: pg-copy-streams into the partitioned parent, no rollups. CPU: utime + stime of the worker process and of the whole Postgres cluster (backends, reaped ones included) over each run.`,
      '',
      '| path | seconds | events/s | worker µs/event | Postgres µs/event |',
      '|---|---|---|---|---|',
      `| raw COPY | ${copy.seconds.toFixed(1)} | ${fmt(n / copy.seconds)} | — | ${us(copy.postgresUs / n)} |`,
      `| pipeline | ${pipe.seconds.toFixed(1)} | ${fmt(n / pipe.seconds)} | ${us(workerPerEvent)} | ${us(pipe.postgresUs / n)} |`,
      '',
      `Postgres CPU split (${fmt(part.length)} events queued first, then ingested by a worker started after): sending the jobs ${us(split.enqueueUs / part.length)} µs/event, ingesting them (fetch, COPY, rollups, complete) ${us((split.postgresUs - split.enqueueUs) / part.length)} µs/event.`,
      '',
      `Rows stored by the pipeline: ${fmt(rows[0]?.n ?? 0)} (expected ${fmt(n)}), ${fmt(Number(size[0]?.bytes ?? 0) / n, 0)} bytes per event on disk with the indexes. Postgres in the pipeline also enqueues, fetches and completes the jobs and upserts the rollups.`,
    ],
    verdicts: [
      {
        claim: 'pipeline vs raw COPY',
        target: '≥ 0.5× (goal 0.7×)',
        value: `${ratio.toFixed(2)}×`,
        pass: ratio >= 0.5 && rows[0]?.n === n,
      },
      {
        claim: 'worker Node CPU per event (issue 12)',
        target: '≤ 3 µs',
        value: `${us(workerPerEvent)} µs`,
        pass: workerPerEvent <= 3,
      },
      {
        claim: 'Postgres CPU per event vs a raw COPY of the same rows (issue 12)',
        target: '≤ 1.3×',
        value: `${Number.isFinite(pgRatio) ? pgRatio.toFixed(2) : 'n/a'}×`,
        pass: pgRatio <= 1.3,
      },
    ],
  };
}
