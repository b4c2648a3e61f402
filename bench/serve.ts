/**
 * Scenario — CPU per request (issue 12): `keytrail serve --no-worker` (demo route, verify, an
 * org usage read), the library path (requireKey with tracking off and on), a bare Express route
 * and the hand-written peer (key lookup + UPDATE per request, awaited and not), in interleaved
 * rounds in one run. For each: req/s, p50, p99 and the CPU per request of every process it
 * uses: the server, the usage worker (a process of its own) and PostgreSQL (this cluster only).
 * After each run the queue is drained before the CPU is read, so ingest lands on its own run.
 */
import { sql } from 'kysely';
import { createKeytrail } from '../src/keytrail.ts';
import { CHART_DATA, writeCharts, type ChartData } from './chart.ts';
import { clusterCpuUs, loadWithCpu, postmasterPid, type Load, type LoadTarget } from './cpu.ts';
import {
  benchConfig,
  child,
  fmt,
  kysely,
  median,
  keytrailEnv,
  quick,
  type Section,
} from './lib.ts';

/** The second pass's rate: every keytrail target keeps up with it on this machine. */
const FIXED_RATE = 3_000;

type Target = Omit<LoadTarget, 'pids'> & {
  name: string;
  server: number;
  events: number;
  /** Left out of the chart (an analytics read would dwarf the request paths' bars). */
  offChart?: true;
};

/** Until the flushers' last batches are queued and the worker has ingested every job. */
async function drained(db: ReturnType<typeof kysely>): Promise<void> {
  await new Promise((r) => setTimeout(r, 400)); // one flush interval (250 ms) and then some
  for (let i = 0; i < 600; i++) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pgboss.job
      where name = 'usage.ingest' and state in ('created', 'retry', 'active')`.execute(db);
    if (rows[0]?.n === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the usage queue did not drain in 60 s');
}

async function processes(dbUrl: string, peerKey: string) {
  const env = keytrailEnv(dbUrl);
  // All four at once: one that fails to start must not leave the others running.
  const started = await Promise.allSettled([
    child('bench/auth-server.ts', [], { BENCH_DATABASE_URL: dbUrl }),
    child('bench/peer-server.ts', [], { BENCH_DATABASE_URL: dbUrl, BENCH_PEER_KEY: peerKey }),
    child('bin/keytrail.ts', ['serve', '--no-worker'], env),
    child('bin/keytrail.ts', ['worker'], env),
  ]);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(
      started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : Promise.resolve())),
    );
    throw failed.reason;
  }
  const [library, peer, serve, worker] = started.map(
    (r) => (r as PromiseFulfilledResult<Child>).value,
  ) as [Child, Child, Child, Child];
  const base = /listening on (\S+)/.exec(serve.line)?.[1]?.replace('localhost', '127.0.0.1');
  if (!base) throw new Error(`no server: ${serve.line}`);
  const pid = (p: { proc: { pid?: number | undefined } }) => p.proc.pid ?? 0;
  return {
    all: [library, peer, serve, worker],
    worker: pid(worker),
    targets(orgId: string): Target[] {
      const lib = (name: string, path: string, events: number): Target => ({
        name,
        url: `${library.line}${path}`,
        server: pid(library),
        events,
      });
      return [
        lib('bare Express route', '/plain/orders/1', 0),
        lib('library: requireKey, tracking off', '/untracked/orders/1', 0),
        lib('library: requireKey, tracking on', '/tracked/orders/1', 1),
        {
          name: 'serve: GET /v1/demo/orders/:id',
          url: `${base}/v1/demo/orders/1`,
          server: pid(serve),
          events: 1,
        },
        {
          name: 'serve: POST /api/keys/verify',
          url: `${base}/api/keys/verify`,
          method: 'POST',
          server: pid(serve),
          // The caller's request and the verified key's use: two events.
          events: 2,
        },
        {
          name: 'serve: GET …/api-keys/usage (org usage)',
          url: `${base}/api/orgs/${orgId}/api-keys/usage?limit=50`,
          server: pid(serve),
          events: 1,
          offChart: true,
        },
        {
          name: 'peer: lookup + UPDATE, awaited',
          url: `${peer.line}/awaited/orders/1`,
          server: pid(peer),
          events: 0,
        },
        {
          name: 'peer: lookup + UPDATE, not awaited',
          url: `${peer.line}/unawaited/orders/1`,
          server: pid(peer),
          events: 0,
        },
      ];
    },
  };
}

export async function serveScenario(dbUrl: string): Promise<Section> {
  const seconds = quick ? 3 : 10;
  const rounds = quick ? 2 : 3;
  const kt = createKeytrail(benchConfig(dbUrl));
  const { org, adminKey } = await kt.orgs.create('bench-serve');
  await kt.close();
  const key = adminKey.plaintext;
  const db = kysely(dbUrl, 1);
  const postmaster = await postmasterPid(db);
  const procs = await processes(dbUrl, key);
  const targets = procs.targets(org.id);
  const load = (t: Target, s: number, rate?: number) =>
    loadWithCpu(
      {
        ...t,
        ...(rate && { rate }),
        headers: { authorization: `Bearer ${key}` },
        ...(t.method === 'POST' && { body: JSON.stringify({ key }) }),
        pids: {
          server: t.server,
          worker: procs.worker,
          ...(postmaster && { postgres: () => clusterCpuUs(postmaster) }),
        },
        settle: () => drained(db),
      },
      s,
    );
  /** Interleaved rounds over every target: saturated (no rate) or at a fixed rate. */
  const pass = async (rate?: number) => {
    const runs = new Map<string, Load[]>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < targets.length; i++) {
        const t = targets[(i + r) % targets.length] as Target;
        runs.get(t.name)?.push(await load(t, seconds, rate));
      }
    }
    return runs;
  };
  try {
    for (const t of targets) await load(t, 1);
    const saturated = await pass();
    const paced = await pass(FIXED_RATE);
    return report(targets, { saturated, paced }, rounds, seconds, postmaster !== undefined);
  } finally {
    await Promise.all(procs.all.map((p) => p.stop()));
    await db.destroy();
  }
}

/** A ratio's verdict: `bound` > 0 is an upper bound, < 0 a lower bound of −bound. */
function ratioVerdict(claim: string, target: string, value: number, bound: number) {
  return {
    claim: `${claim} (issue 12)`,
    target,
    value: `${value.toFixed(2)}×`,
    pass: bound > 0 ? value <= bound : value >= -bound,
  };
}

type Child = Awaited<ReturnType<typeof child>>;
type Runs = Map<string, Load[]>;

/** Medians of a pass, and its table (`×` against the bare route's server CPU of the pass). */
function figures(targets: Target[], runs: Runs) {
  const m = (name: string, f: (l: Load) => number) => median((runs.get(name) ?? []).map(f));
  const cpu = (name: string, p: string) => m(name, (l) => l.cpuUs[p] ?? 0);
  const total = (name: string) => cpu(name, 'server') + cpu(name, 'worker') + cpu(name, 'postgres');
  const bareCpu = cpu(targets[0]?.name ?? '', 'server');
  const vs = (v: number) => `${(v / bareCpu).toFixed(2)}×`;
  const table = [
    '| target | req/s | p50 ms | p99 ms | server µs | worker µs | Postgres µs | total µs | server × | total × | worker µs/event |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...targets.map(
      (t) =>
        `| ${t.name} | ${fmt(m(t.name, (l) => l.rps))} | ${fmt(m(t.name, (l) => l.p50))} | ${fmt(m(t.name, (l) => l.p99))} | ${fmt(cpu(t.name, 'server'), 1)} | ${fmt(cpu(t.name, 'worker'), 1)} | ${fmt(cpu(t.name, 'postgres'), 1)} | ${fmt(total(t.name), 1)} | ${vs(cpu(t.name, 'server'))} | ${vs(total(t.name))} | ${t.events > 0 ? fmt(cpu(t.name, 'worker') / t.events, 1) : '—'} |`,
    ),
  ];
  return { cpu, total, bareCpu, table };
}

function report(
  targets: Target[],
  passes: { saturated: Runs; paced: Runs },
  rounds: number,
  seconds: number,
  withPostgres: boolean,
): Section {
  const { cpu, total, bareCpu, table } = figures(targets, passes.saturated);
  const paced = figures(targets, passes.paced);
  const [, untracked, tracked, demo, verify] = targets.map((t): string => t.name);
  const demoName = demo ?? '';
  const perEvent = cpu(demoName, 'worker');
  const bars = (f: ReturnType<typeof figures>) =>
    targets
      .filter((t) => !t.offChart)
      .map((t) => ({
        label: t.name,
        parts: ['server', 'worker', 'postgres'].map((p) => Number(f.cpu(t.name, p).toFixed(1))),
      }));
  const charts: ChartData[] = [
    ['cpu-per-request', 'saturated, autocannon -c 32', figures(targets, passes.saturated)] as const,
    ['cpu-per-request-paced', `paced at ${fmt(FIXED_RATE)} req/s`, paced] as const,
  ].map(([file, how, f]) => ({
    file,
    title: `CPU per request, µs, ${how} (medians of ${rounds} rounds × ${seconds} s)`,
    unit: 'µs',
    series: ['server', 'usage worker', 'PostgreSQL'],
    bars: bars(f),
    mark: { at: Number((2.5 * f.bareCpu).toFixed(1)), label: '2.5 × bare server CPU' },
  }));
  // Only a full-size run replaces the charts in docs/ (a quick one draws them in /tmp).
  writeCharts(quick ? '/tmp/keytrail-bench/cpu-per-request.json' : CHART_DATA, charts);
  return {
    title:
      '8. CPU per request: `keytrail serve`, the library, a bare route and a hand-written peer',
    lines: [
      `autocannon, 32 connections, ${rounds} interleaved rounds × ${seconds} s per target (medians).`,
      'CPU = utime + stime from /proc ÷ requests, for the server process, the usage worker (its own',
      `process) and ${withPostgres ? 'every process of this PostgreSQL cluster' : 'PostgreSQL (not measured: not on this machine)'}; the queue is drained before`,
      "each run's CPU is read. `×` is against the bare route's server CPU.",
      '',
      'Saturated (what each target does flat out; the verdicts below are judged on this pass):',
      '',
      '![CPU per request by process, saturated](bench/cpu-per-request.svg)',
      '',
      ...table,
      '',
      `Paced at ${fmt(FIXED_RATE)} req/s (the machine is not saturated: less contention between the`,
      'processes, but every request pays its own wake-ups; targets slower than the rate run flat out):',
      '',
      '![CPU per request by process, paced](bench/cpu-per-request-paced.svg)',
      '',
      ...paced.table,
    ],
    verdicts: [
      ratioVerdict(
        'demo route: server CPU vs bare route',
        '≤ 1.5×',
        cpu(demoName, 'server') / bareCpu,
        1.5,
      ),
      ratioVerdict(
        'verify: server CPU vs bare route',
        '≤ 2×',
        cpu(verify ?? '', 'server') / bareCpu,
        2,
      ),
      ratioVerdict(
        'demo route: server + worker + Postgres CPU vs bare route',
        '≤ 2.5×',
        total(demoName) / bareCpu,
        2.5,
      ),
      ratioVerdict(
        'library: tracking on vs off (server CPU, off ÷ on)',
        '≥ 0.97×',
        cpu(untracked ?? '', 'server') / cpu(tracked ?? '', 'server'),
        -0.97,
      ),
      ratioVerdict(
        'library: auth + tracking vs bare (server CPU, bare ÷ tracked)',
        '≥ 0.90×',
        bareCpu / cpu(tracked ?? '', 'server'),
        -0.9,
      ),
      {
        claim: 'worker Node CPU per ingested event, demo route (issue 12)',
        target: '≤ 3 µs',
        value: `${perEvent.toFixed(1)} µs`,
        pass: perEvent <= 3,
      },
    ],
  };
}
