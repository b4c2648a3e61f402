/**
 * Scenario — scaling on one machine (issue 12, docs/scaling.md): N `keytrail serve --no-worker`
 * processes and W `keytrail worker` processes against one Postgres, loaded together on the demo
 * route (16 keys in turn, 32 connections split over the servers). For each (N, W): req/s, p99,
 * CPU per request of the servers, the workers and Postgres, how far ingest fell behind during
 * the load (the largest backlog of queued events, sampled every 250 ms) and how long the queue
 * took to drain once the load stopped (the ingest lag a reader of the rollups sees at worst).
 */
import autocannon from 'autocannon';
import { sql } from 'kysely';
import { createKeytrail } from '../src/keytrail.ts';
import { clusterCpuUs, cpuUs, postmasterPid } from './cpu.ts';
import { benchConfig, child, fmt, keytrailEnv, kysely, quick, type Section } from './lib.ts';

type Child = Awaited<ReturnType<typeof child>>;
type Row = {
  servers: number;
  workers: number;
  rps: number;
  p99: number;
  serverUs: number;
  workerUs: number;
  postgresUs: number;
  backlog: number;
  drainMs: number;
};

const CONFIGS: [number, number][] = quick
  ? [
      [1, 1],
      [2, 2],
    ]
  : [
      [1, 1],
      [2, 1],
      [4, 1],
      [1, 2],
      [2, 2],
      [4, 2],
      [1, 4],
      [2, 4],
      [4, 4],
    ];

async function startAll(dbUrl: string, servers: number, workers: number): Promise<Child[]> {
  const env = keytrailEnv(dbUrl);
  const started = await Promise.allSettled([
    ...Array.from({ length: servers }, () =>
      child('bin/keytrail.ts', ['serve', '--no-worker'], env),
    ),
    ...Array.from({ length: workers }, () => child('bin/keytrail.ts', ['worker'], env)),
  ]);
  const ok = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(ok.map((c) => c.stop()));
    throw failed.reason;
  }
  return ok;
}

/** Events queued but not yet ingested (jobs not completed × their event count). */
async function backlog(db: ReturnType<typeof kysely>): Promise<number> {
  const { rows } = await sql<{ n: number }>`select coalesce(sum((data->>'n')::int), 0)::int as n
    from pgboss.job where name = 'usage.ingest' and state in ('created', 'retry', 'active')`.execute(
    db,
  );
  return rows[0]?.n ?? 0;
}

async function counted(db: ReturnType<typeof kysely>, orgId: string): Promise<number> {
  const { rows } = await sql<{ n: string }>`select coalesce(sum(request_count), 0) as n
    from api_key_usage_totals where org_id = ${orgId}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

async function measure(
  dbUrl: string,
  db: ReturnType<typeof kysely>,
  o: { orgId: string; keys: string[]; postmaster: number | undefined; seconds: number },
  servers: number,
  workers: number,
): Promise<Row> {
  const procs = await startAll(dbUrl, servers, workers);
  try {
    const serving = procs.slice(0, servers);
    const bases = serving.map(
      (s) => /listening on (\S+)/.exec(s.line)?.[1]?.replace('localhost', '127.0.0.1') ?? '',
    );
    const pids = (list: Child[]) => list.map((c) => c.proc.pid ?? 0);
    const cpu = (list: number[]) => list.reduce((sum, pid) => sum + cpuUs(pid), 0);
    const pgCpu = () => (o.postmaster === undefined ? Number.NaN : clusterCpuUs(o.postmaster));
    const serverPids = pids(serving);
    const workerPids = pids(procs.slice(servers));
    let turn = 0;
    const load = (duration: number) =>
      Promise.all(
        bases.map((base) =>
          autocannon({
            url: `${base}/v1/demo/orders/1`,
            connections: Math.max(4, Math.floor(32 / servers)),
            duration,
            requests: [
              {
                setupRequest: (req) => ({
                  ...req,
                  headers: { authorization: `Bearer ${o.keys[turn++ % o.keys.length] ?? ''}` },
                }),
              },
            ],
          }),
        ),
      );
    // Fresh processes: a warm-up load first (their JIT, every key cached), then a drained queue.
    await load(quick ? 2 : 4);
    while ((await backlog(db)) > 0) await new Promise((r) => setTimeout(r, 50));
    const countedBefore = await counted(db, o.orgId);
    const before = { server: cpu(serverPids), worker: cpu(workerPids), pg: pgCpu() };
    let maxBacklog = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxBacklog = Math.max(maxBacklog, await backlog(db));
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    const results = await load(o.seconds);
    const loadEnded = performance.now();
    const requests = results.reduce((n, r) => n + r.requests.total, 0);
    const bad = results.reduce((n, r) => n + r.non2xx + r.errors, 0);
    if (bad > 0) throw new Error(`${bad} failed requests with ${servers} servers`);
    // Drained: every request of the run counted in the totals.
    while ((await counted(db, o.orgId)) < countedBefore + requests) {
      if (performance.now() - loadEnded > 120_000) throw new Error('ingest did not catch up');
      await new Promise((r) => setTimeout(r, 50));
    }
    const drainMs = performance.now() - loadEnded;
    sampling = false;
    await sampler;
    return {
      servers,
      workers,
      rps: results.reduce((n, r) => n + r.requests.average, 0),
      p99: Math.max(...results.map((r) => r.latency.p99)),
      serverUs: (cpu(serverPids) - before.server) / requests,
      workerUs: (cpu(workerPids) - before.worker) / requests,
      postgresUs: (pgCpu() - before.pg) / requests,
      backlog: maxBacklog,
      drainMs,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}

export async function scalingScenario(dbUrl: string): Promise<Section> {
  const seconds = quick ? 3 : 8;
  const kt = createKeytrail(benchConfig(dbUrl));
  const { org, adminKey } = await kt.orgs.create('bench-scaling');
  const caller = {
    id: adminKey.apiKey.id,
    orgId: org.id,
    environment: 'live' as const,
    scopes: ['org:admin'],
  };
  const keys = [adminKey.plaintext];
  for (let i = 1; i < Number(process.env.BENCH_KEYS ?? 16); i++)
    keys.push((await kt.keys.create(caller, org.id, { name: `load ${i}` })).plaintext);
  await kt.close();
  const db = kysely(dbUrl, 2);
  const o = { orgId: org.id, keys, postmaster: await postmasterPid(db), seconds };
  const rows: Row[] = [];
  try {
    await measure(dbUrl, db, { ...o, seconds: 1 }, 1, 1); // warm-up: Postgres caches, JIT
    for (const [servers, workers] of CONFIGS)
      rows.push(await measure(dbUrl, db, o, servers, workers));
  } finally {
    await db.destroy();
  }
  const one = rows.find((r) => r.servers === 1 && r.workers === 1);
  return {
    title: '9. Scaling on one machine: serve processes × workers, one Postgres',
    lines: [
      `\`GET /v1/demo/orders/:id\` through N \`keytrail serve --no-worker\` processes (32 connections split over them, 16 keys in turn) and W \`keytrail worker\` processes, ${seconds} s per row, all on this machine's 2 cores with the load generator and Postgres. CPU per request: utime + stime of the servers, the workers and the whole Postgres cluster over the run and the drain. Backlog: the most events queued and not yet ingested during the load. Drain: from the end of the load until every request is counted in the totals.`,
      '',
      '| servers | workers | req/s | × 1 server | p99 ms | server µs | worker µs | Postgres µs | total µs | backlog (events) | drain ms |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.servers} | ${r.workers} | ${fmt(r.rps)} | ${one ? (r.rps / one.rps).toFixed(2) : '—'} | ${fmt(r.p99)} | ${fmt(r.serverUs, 1)} | ${fmt(r.workerUs, 1)} | ${fmt(r.postgresUs, 1)} | ${fmt(r.serverUs + r.workerUs + r.postgresUs, 1)} | ${fmt(Math.round(r.backlog))} | ${fmt(Math.round(r.drainMs))} |`,
      ),
    ],
    verdicts: [],
  };
}
