/**
 * Scenario 1 — auth overhead (§8): the same route without auth, with auth and tracking off, with
 * auth and tracking on, under autocannon at fixed connections, interleaved rounds, medians.
 * A usage worker runs in its own process during the whole run, as in production.
 */
import autocannon from 'autocannon';
import { createKeytrail } from '../src/keytrail.ts';
import { benchConfig, child, fmt, median, quick, type Section } from './lib.ts';

const VARIANTS = ['plain', 'untracked', 'tracked'] as const;
type Variant = (typeof VARIANTS)[number];
type Run = { rps: number; p50: number; p99: number };

function load(url: string, key: string, seconds: number, connections: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    autocannon(
      { url, connections, duration: seconds, headers: { authorization: `Bearer ${key}` } },
      (error, result) => {
        if (error) return reject(error instanceof Error ? error : new Error(String(error)));
        if (result.non2xx > 0 || result.errors > 0)
          return reject(new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`));
        resolve({ rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99 });
      },
    );
  });
}

export async function authScenario(dbUrl: string): Promise<Section> {
  const seconds = quick ? 3 : 10;
  const rounds = quick ? 2 : 5;
  const connections = 32;
  const kt = createKeytrail(benchConfig(dbUrl));
  const { adminKey } = await kt.orgs.create('bench-auth');
  await kt.close();
  const server = await child('bench/auth-server.ts', [], { BENCH_DATABASE_URL: dbUrl });
  const worker = process.env.BENCH_NO_WORKER
    ? undefined
    : await child('bin/keytrail.ts', ['worker'], {
        DATABASE_URL: dbUrl,
        KEYTRAIL_KEY_PEPPER: 'x'.repeat(40),
        KEYTRAIL_LOG_LEVEL: 'warn',
        KEYTRAIL_WORKER_METRICS_PORT: '0',
      }).catch(() => undefined);
  const runs: Record<Variant, Run[]> = { plain: [], untracked: [], tracked: [] };
  try {
    for (const v of VARIANTS)
      await load(`${server.line}/${v}/orders/1`, adminKey.plaintext, 2, connections);
    for (let r = 0; r < rounds; r++) {
      // Rotate the order each round so drift on a shared machine does not favour one variant.
      const order = VARIANTS.map((_, i) => VARIANTS[(i + r) % VARIANTS.length] as Variant);
      for (const v of order)
        runs[v].push(
          await load(`${server.line}/${v}/orders/${r}`, adminKey.plaintext, seconds, connections),
        );
    }
  } finally {
    await server.stop();
    await worker?.stop();
  }
  const m = (v: Variant, f: keyof Run) => median(runs[v].map((x) => x[f]));
  const vsPlain = m('tracked', 'rps') / m('plain', 'rps');
  const vsUntracked = m('tracked', 'rps') / m('untracked', 'rps');
  const addedP99 = m('tracked', 'p99') - m('plain', 'p99');
  return {
    title: '1. Auth overhead',
    lines: [
      `autocannon, ${connections} connections, ${rounds} interleaved rounds × ${seconds} s per variant (medians); server, usage worker and Postgres share the machine.`,
      '',
      '| variant | req/s | p50 ms | p99 ms |',
      '|---|---|---|---|',
      ...VARIANTS.map(
        (v) => `| ${v} | ${fmt(m(v, 'rps'))} | ${fmt(m(v, 'p50'))} | ${fmt(m(v, 'p99'))} |`,
      ),
    ],
    verdicts: [
      {
        claim: 'auth + tracking vs no auth (throughput)',
        target: '≥ 0.90×',
        value: `${vsPlain.toFixed(3)}×`,
        pass: vsPlain >= 0.9,
      },
      {
        claim: 'tracking on vs off (throughput)',
        target: '≥ 0.97×',
        value: `${vsUntracked.toFixed(3)}×`,
        pass: vsUntracked >= 0.97,
      },
      {
        claim: 'added p99 (tracked − plain)',
        target: '≤ 1 ms',
        value: `${addedP99.toFixed(2)} ms`,
        pass: addedP99 <= 1,
      },
    ],
  };
}
