/**
 * Scenario — `keytrail serve` itself (issue 12): the demo route and `POST /api/keys/verify` of
 * `keytrail serve --no-worker`, beside a bare Express route (etag off) served by another process,
 * with the usage worker in a process of its own. For each: req/s, p50, p99 and the server
 * process's CPU per request (utime + stime from /proc/PID/stat ÷ requests), in interleaved
 * rounds; ratios are taken to the bare route of the same run.
 */
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { createKeytrail } from '../src/keytrail.ts';
import { benchConfig, child, fmt, median, PEPPER, quick, type Section } from './lib.ts';

type Target = { name: string; url: string; method?: 'GET' | 'POST'; body?: string; pid: number };
type Run = { rps: number; p50: number; p99: number; cpuUs: number };

const TICK_US = 1_000_000 / 100; // USER_HZ is 100 on Linux

/** utime + stime of a process, in µs. */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

async function load(t: Target, key: string, seconds: number): Promise<Run> {
  const before = cpuUs(t.pid);
  const result = await autocannon({
    url: t.url,
    connections: 32,
    duration: seconds,
    method: t.method ?? 'GET',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(t.body && { body: t.body }),
  });
  const used = cpuUs(t.pid) - before;
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${t.url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuUs: used / result.requests.total,
  };
}

export async function serveScenario(dbUrl: string): Promise<Section> {
  const seconds = quick ? 3 : 10;
  const rounds = quick ? 2 : 3;
  const kt = createKeytrail(benchConfig(dbUrl));
  const { adminKey } = await kt.orgs.create('bench-serve');
  await kt.close();
  const env = {
    DATABASE_URL: dbUrl,
    KEYTRAIL_KEY_PEPPER: PEPPER,
    KEYTRAIL_LOG_LEVEL: 'warn',
    KEYTRAIL_DEMO_ROUTES: 'true',
    KEYTRAIL_WORKER_METRICS_PORT: '0',
    PORT: '0',
    HOST: '127.0.0.1',
  };
  const bare = await child('bench/auth-server.ts', [], { BENCH_DATABASE_URL: dbUrl });
  const serve = await child('bin/keytrail.ts', ['serve', '--no-worker'], env);
  const worker = await child('bin/keytrail.ts', ['worker'], env);
  const base = /listening on (\S+)/.exec(serve.line)?.[1]?.replace('localhost', '127.0.0.1');
  if (!base || !bare.proc.pid || !serve.proc.pid) throw new Error(`no server: ${serve.line}`);
  const targets: Target[] = [
    { name: 'bare Express route', url: `${bare.line}/plain/orders/1`, pid: bare.proc.pid },
    {
      name: 'serve: GET /v1/demo/orders/:id',
      url: `${base}/v1/demo/orders/1`,
      pid: serve.proc.pid,
    },
    {
      name: 'serve: POST /api/keys/verify',
      url: `${base}/api/keys/verify`,
      method: 'POST',
      body: JSON.stringify({ key: adminKey.plaintext }),
      pid: serve.proc.pid,
    },
  ];
  const runs = new Map<string, Run[]>(targets.map((t) => [t.name, []]));
  try {
    for (const t of targets) await load(t, adminKey.plaintext, 2);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < targets.length; i++) {
        const t = targets[(i + r) % targets.length] as Target;
        runs.get(t.name)?.push(await load(t, adminKey.plaintext, seconds));
      }
    }
  } finally {
    await serve.stop();
    await worker.stop();
    await bare.stop();
  }
  const m = (name: string, f: keyof Run) => median((runs.get(name) ?? []).map((x) => x[f]));
  const bareCpu = m(targets[0]!.name, 'cpuUs');
  const ratio = (name: string) => m(name, 'cpuUs') / bareCpu;
  const demo = ratio(targets[1]!.name);
  const verify = ratio(targets[2]!.name);
  return {
    title: '8. `keytrail serve`: CPU per request beside a bare Express route',
    lines: [
      `autocannon, 32 connections, ${rounds} interleaved rounds × ${seconds} s per target (medians);`,
      'server CPU = utime + stime of the serving process ÷ requests; the usage worker runs in its own process.',
      '',
      '| target | req/s | p50 ms | p99 ms | server CPU per request | vs bare |',
      '|---|---|---|---|---|---|',
      ...targets.map(
        (t) =>
          `| ${t.name} | ${fmt(m(t.name, 'rps'))} | ${fmt(m(t.name, 'p50'))} | ${fmt(m(t.name, 'p99'))} | ${fmt(m(t.name, 'cpuUs'), 1)} µs | ${ratio(t.name).toFixed(2)}× |`,
      ),
    ],
    verdicts: [
      {
        claim: 'demo route server CPU vs bare route (issue 12)',
        target: '≤ 1.5×',
        value: `${demo.toFixed(2)}×`,
        pass: demo <= 1.5,
      },
      {
        claim: 'verify server CPU vs bare route (issue 12)',
        target: '≤ 2×',
        value: `${verify.toFixed(2)}×`,
        pass: verify <= 2,
      },
    ],
  };
}
