/**
 * `make bench-citus` (SPEC §12): the same work on one PostgreSQL and on the local Citus cluster
 * (a coordinator and two workers on this machine, `scripts/citus.sh`), in one run:
 * - ingest: events through the pipeline (buffer → pg-boss → `keytrail worker` → events and
 *   rollups), events/s and CPU per event of the worker process and of each PostgreSQL;
 * - reads: the org usage page, key usage (90 days) and raw-event pages through `keytrail serve`,
 *   on the same generated dataset, p50/p95 (second pass: data in memory);
 * - storage: bytes per stored event of the closed months in row and then columnar form
 *   (`partitions compress`), and the reads again once they are columnar.
 * The cluster's three servers share the two cores with everything else here: this measures what
 * distribution costs per event, not what more machines buy (docs/scaling.md).
 */
import { execFileSync } from 'node:child_process';
import { sql } from 'kysely';
import { adminQuery, databaseUrl } from '../src/testing/databases.ts';
import { citusNodes, createClusterDatabase } from '../src/testing/citus.ts';
import { compressPartitions } from '../src/usage/usage.compress.ts';
import { writeCharts } from './chart.ts';
import { clusterCpuUs, postmasterPid } from './cpu.ts';
import { generate as generateEvents, makeKeys, pipelineRun } from './ingest.ts';
import { buildRollups, generate as generateHistory, readerServer, timed } from './reads.ts';
import type { UsageEvent } from '../src/usage/usage.types.ts';
import { fmt, kysely, percentile, prepareDatabase, quick, type Section } from './lib.ts';

const DAY = 86_400_000;

type Target = { name: string; url: string; nodes: { name: string; cpu: () => number }[] };

/** A fresh database on every node of the local cluster (started if none runs), 32 shards. */
async function clusterDatabase(name: string): Promise<{ url: string; drop(): Promise<void> }> {
  execFileSync('bash', ['scripts/citus.sh', 'start'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const server = execFileSync('bash', ['scripts/citus.sh', 'url'], { encoding: 'utf8' }).trim();
  const nodes = await citusNodes(server);
  if (!nodes) throw new Error('the cluster has no citus extension');
  for (const node of nodes) {
    await adminQuery(node, `drop database if exists "${name}" with (force)`);
  }
  await createClusterDatabase(nodes, name);
  await adminQuery(server, `alter database "${name}" reset citus.shard_count`);
  const url = databaseUrl(server, name);
  await prepareDatabase(url);
  return {
    url,
    async drop() {
      for (const node of nodes) {
        await adminQuery(node, `drop database if exists "${name}" with (force)`);
      }
    },
  };
}

/** Each server's CPU (its postmaster and backends), found from a connection to it. */
async function serverCpu(name: string, url: string): Promise<Target['nodes'][number]> {
  const db = kysely(url, 1);
  const pid = await postmasterPid(db);
  await db.destroy();
  return { name, cpu: () => (pid === undefined ? Number.NaN : clusterCpuUs(pid)) };
}

/** Orgs of the ingest: their shards spread over the workers, as many tenants' would. */
const INGEST_ORGS = 8;

async function ingest(t: Target, events: number) {
  const per = events / INGEST_ORGS;
  const orgIds: string[] = [];
  const lists: UsageEvent[][] = [];
  for (let o = 0; o < INGEST_ORGS; o++) {
    const { orgId, keyIds } = await makeKeys(t.url, `bench-citus-ingest-${Date.now()}-${o}`, 125);
    orgIds.push(orgId);
    lists.push(generateEvents(orgId, keyIds, per));
  }
  // The orgs' events interleaved, as they arrive: every batch holds each org's.
  const list = Array.from(
    { length: events },
    (_, i) => lists[i % INGEST_ORGS]?.[Math.floor(i / INGEST_ORGS)] as UsageEvent,
  );
  const before = t.nodes.map((n) => n.cpu());
  const total = () => t.nodes.reduce((sum, n) => sum + n.cpu(), 0);
  const run = await pipelineRun(t.url, orgIds, list, total);
  const perNode = t.nodes.map((n, i) => (n.cpu() - (before[i] ?? 0)) / events);
  return { seconds: run.seconds, workerUs: run.workerUs / events, perNode };
}

type Reads = { org: number[]; key: number[]; events: number[] };

/** The three read paths, 50 requests each (20 quick), twice; the second pass is kept. */
async function reads(url: string, orgId: string, keyIds: string[]): Promise<Reads> {
  const { server, base, key } = await readerServer(url, orgId, keyIds);
  const n = quick ? 20 : 50;
  const pick = (i: number) => keyIds[(i * 7919) % keyIds.length] ?? '';
  const org = `/api/orgs/${orgId}`;
  const from90 = new Date(Date.now() - 90 * DAY).toISOString();
  const paths = {
    org: Array.from({ length: n }, () => `${org}/api-keys/usage?limit=50`),
    key: Array.from({ length: n }, (_, i) => `${org}/api-keys/${pick(i)}/usage?from=${from90}`),
    // Pages starting 1 to 80 days back: most in the months compress turns columnar.
    events: Array.from(
      { length: n },
      (_, i) =>
        `${org}/usage-events?limit=100&from=${new Date(Date.now() - (1 + (i % 80)) * DAY).toISOString()}`,
    ),
  };
  try {
    const pass = async () => ({
      org: await timed(base, key, paths.org),
      key: await timed(base, key, paths.key),
      events: await timed(base, key, paths.events),
    });
    await pass();
    return await pass();
  } finally {
    await server.stop();
  }
}

/** Closed months (compress's rule): rows and bytes on disk, with and without indexes. */
async function closedMonths(url: string, citus: boolean) {
  const db = kysely(url, 1);
  const total = citus ? sql`citus_total_relation_size` : sql`pg_total_relation_size`;
  const table = citus ? sql`citus_table_size` : sql`pg_table_size`;
  const { rows } = await sql<{ name: string; rows: string; bytes: string; table_bytes: string }>`
    select c.relname as name, ${total}(c.oid)::int8::text as bytes,
      ${table}(c.oid)::int8::text as table_bytes, 0::text as rows
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'api_key_usage_events'::regclass
    order by c.relname`.execute(db);
  const cutoff = new Date(Date.now() - 8 * DAY);
  const closed = rows.filter((r) => {
    const m = /_(\d{4})_(\d{2})$/.exec(r.name);
    return m && Date.UTC(Number(m[1]), Number(m[2]), 1) <= cutoff.getTime();
  });
  let events = 0;
  for (const r of closed) {
    const { rows: n } = await sql<{ n: string }>`select count(*)::text as n
      from ${sql.table(r.name)}`.execute(db);
    events += Number(n[0]?.n ?? 0);
  }
  await db.destroy();
  const bytes = closed.reduce((s, r) => s + Number(r.bytes), 0);
  const tableBytes = closed.reduce((s, r) => s + Number(r.table_bytes), 0);
  return { months: closed.length, events, bytes, tableBytes };
}

export async function citusScenario(plainUrl: string): Promise<Section> {
  const cluster = await clusterDatabase(`keytrail_bench_citus_${process.pid}`);
  try {
    const server = execFileSync('bash', ['scripts/citus.sh', 'url'], { encoding: 'utf8' }).trim();
    const nodes = (await citusNodes(server)) ?? [];
    const citus: Target = {
      name: 'Citus (coordinator + 2 workers)',
      url: cluster.url,
      nodes: await Promise.all(
        nodes.map((node, i) =>
          serverCpu(i === 0 ? 'coordinator' : `worker ${i}`, databaseUrl(node, 'postgres')),
        ),
      ),
    };
    const plain: Target = {
      name: 'one PostgreSQL',
      url: plainUrl,
      nodes: [await serverCpu('PostgreSQL', plainUrl)],
    };

    // Ingest, interleaved: plain, cluster, plain, cluster.
    const n = quick ? 50_000 : 300_000;
    const runs: { t: Target; r: Awaited<ReturnType<typeof ingest>> }[] = [];
    for (const t of [plain, citus, plain, citus]) {
      process.stderr.write(`bench citus: ingest ${fmt(n)} events on ${t.name}\n`);
      runs.push({ t, r: await ingest(t, n) });
    }

    // Reads and storage on the same generated history (SQL), on both.
    const keys = quick ? 1_000 : 2_000;
    const history = quick ? 300_000 : 2_000_000;
    const dataset: Record<string, { orgId: string; keyIds: string[]; seconds: number }> = {};
    for (const t of [plain, citus]) {
      process.stderr.write(`bench citus: ${fmt(history)} events of history on ${t.name}\n`);
      const { orgId, keyIds } = await makeKeys(t.url, `bench-citus-reads-${Date.now()}`, keys - 1);
      const seconds =
        (await generateHistory(t.url, orgId, history)) + (await buildRollups(t.url, orgId));
      dataset[t.name] = { orgId, keyIds, seconds };
    }
    const readsOf = async (t: Target) => {
      const d = dataset[t.name];
      if (!d) throw new Error(t.name);
      return reads(t.url, d.orgId, d.keyIds);
    };
    process.stderr.write('bench citus: reads\n');
    const plainReads = await readsOf(plain);
    const rowReads = await readsOf(citus);
    const rowStore = await closedMonths(citus.url, true);
    const plainStore = await closedMonths(plain.url, false);
    process.stderr.write('bench citus: compress\n');
    const db = kysely(citus.url, 1);
    const compressStarted = performance.now();
    const compressed = await compressPartitions(db as never, { now: new Date(), dryRun: false });
    const compressSeconds = (performance.now() - compressStarted) / 1000;
    await db.destroy();
    const colStore = await closedMonths(citus.url, true);
    const colReads = await readsOf(citus);

    if (!quick) {
      // docs/bench/citus-*.svg: CPU per ingested event by process, and bytes per stored event.
      writeCharts('docs/bench/citus.json', [
        {
          file: 'citus-ingest-cpu',
          title: 'CPU per ingested event (µs): one PostgreSQL vs a coordinator and two workers',
          unit: 'µs',
          series: [
            'keytrail worker',
            'PostgreSQL / coordinator',
            'Citus worker 1',
            'Citus worker 2',
          ],
          bars: runs.map(({ t, r }, i) => ({
            label: `run ${i + 1}, ${t === citus ? 'Citus' : 'one PostgreSQL'}`,
            parts: [r.workerUs, ...r.perNode, ...(t === citus ? [] : [0, 0])],
          })),
        },
        {
          file: 'citus-storage',
          title: 'Bytes per stored event of the closed months: table and indexes',
          unit: 'bytes',
          series: ['table', 'indexes'],
          bars: [
            ['one PostgreSQL, row', plainStore],
            ['Citus, row', rowStore],
            ['Citus, columnar', colStore],
          ].map(([label, s]) => {
            const store = s as typeof rowStore;
            const table = store.tableBytes / Math.max(1, store.events);
            return {
              label: label as string,
              parts: [table, store.bytes / Math.max(1, store.events) - table],
            };
          }),
        },
      ]);
    }
    const us = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');
    const p = (xs: number[], q: number) => fmt(percentile(xs, q));
    const readRow = (name: string, r: Reads) =>
      `| ${name} | ${p(r.org, 0.5)} / ${p(r.org, 0.95)} | ${p(r.key, 0.5)} / ${p(r.key, 0.95)} | ${p(r.events, 0.5)} / ${p(r.events, 0.95)} |`;
    const perEvent = (s: { bytes: number; events: number }) => s.bytes / Math.max(1, s.events);
    const tablePerEvent = (s: { tableBytes: number; events: number }) =>
      s.tableBytes / Math.max(1, s.events);
    return {
      title: 'Citus: one PostgreSQL vs a coordinator and two workers',
      lines: [
        `Same machine, same run. The cluster is Citus 12.1 on PostgreSQL 15 (\`scripts/citus.sh\`: three servers on local ports, 32 shards per table); one PostgreSQL is the embedded one of the other scenarios. All of it shares the machine's cores: the cluster's figures are what distribution costs per event, not what more machines buy.`,
        '',
        `**Ingest** (${fmt(n)} events of ${INGEST_ORGS} orgs, 1,000 keys, through the pipeline; run twice on each, interleaved; CPU of the \`keytrail worker\` process and of each server's postmaster and backends, per event):`,
        '',
        `| run | target | seconds | events/s | worker µs/event | ${citus.nodes.map((x) => `${x.name} µs/event`).join(' | ')} | one PostgreSQL µs/event |`,
        `|---|---|---|---|---|${citus.nodes.map(() => '---|').join('')}---|`,
        ...runs.map(({ t, r }, i) => {
          const cells =
            t === citus
              ? [...r.perNode.map(us), '']
              : [...citus.nodes.map(() => ''), us(r.perNode[0] ?? Number.NaN)];
          return `| ${i + 1} | ${t.name} | ${r.seconds.toFixed(1)} | ${fmt(n / r.seconds)} | ${us(r.workerUs)} | ${cells.join(' | ')} |`;
        }),
        '',
        `**Reads** (${fmt(keys)} keys, ${fmt(history)} events over 90 days generated with SQL, rollups rebuilt; \`keytrail serve --no-worker\`, ${quick ? 20 : 50} sequential requests per path, second pass; p50 / p95 ms):`,
        '',
        '| target | org usage page (50 keys) | key usage, 90 days | raw events page (100) |',
        '|---|---|---|---|',
        readRow('one PostgreSQL', plainReads),
        readRow('Citus, row storage', rowReads),
        readRow('Citus, closed months columnar', colReads),
        '',
        `**Storage** of the closed months (${rowStore.months} months, ${fmt(rowStore.events)} events; repeated routes, methods, agents and addresses as generated):`,
        '',
        '| storage | bytes per event with indexes | bytes per event, table alone |',
        '|---|---|---|',
        `| one PostgreSQL, row | ${fmt(perEvent(plainStore), 0)} | ${fmt(tablePerEvent(plainStore), 0)} |`,
        `| Citus, row | ${fmt(perEvent(rowStore), 0)} | ${fmt(tablePerEvent(rowStore), 0)} |`,
        `| Citus, columnar | ${fmt(perEvent(colStore), 0)} | ${fmt(tablePerEvent(colStore), 0)} |`,
        '',
        `\`partitions compress\` took ${compressSeconds.toFixed(1)} s for ${compressed.partitions.length} months (${compressed.failed.length} failed). The indexes (primary key and key index) stay row-oriented B-trees: most of what a columnar month keeps.`,
      ],
      verdicts: [],
    };
  } finally {
    await cluster.drop();
  }
}
