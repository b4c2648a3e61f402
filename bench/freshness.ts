/**
 * Scenario 3 — freshness (§8): steady load at a fixed rate on a tracked route while a probe key
 * measures the delay from a response to its event being counted in api_key_usage_totals.
 */
import autocannon from 'autocannon';
import { sql } from 'kysely';
import { createKeytrail } from '../src/keytrail.ts';
import { benchConfig, child, fmt, kysely, percentile, quick, type Section } from './lib.ts';

export async function freshnessScenario(url: string): Promise<Section> {
  const rate = quick ? 2_000 : 5_000;
  const samples = quick ? 30 : 100;
  const kt = createKeytrail(benchConfig(url));
  const { org, adminKey } = await kt.orgs.create('bench-freshness');
  const probe = await kt.keys.create(
    { id: adminKey.apiKey.id, orgId: org.id, environment: 'live', scopes: ['org:admin'] },
    org.id,
    { name: 'probe' },
  );
  await kt.close();
  const server = await child('bench/auth-server.ts', [], { BENCH_DATABASE_URL: url });
  const worker = await child('bin/keytrail.ts', ['worker'], {
    DATABASE_URL: url,
    KEYTRAIL_KEY_PEPPER: 'x'.repeat(40),
    KEYTRAIL_LOG_LEVEL: 'warn',
    KEYTRAIL_WORKER_METRICS_PORT: '0',
  });
  const db = kysely(url, 1);
  const delays: number[] = [];
  let load: autocannon.Instance | undefined;
  let achieved = 0;
  const done = new Promise<void>((resolve) => {
    load = autocannon(
      {
        url: `${server.line}/tracked/orders/1`,
        connections: 16,
        overallRate: rate,
        duration: 3600,
        headers: { authorization: `Bearer ${adminKey.plaintext}` },
      },
      (_error, result) => {
        achieved = result.requests.average;
        resolve();
      },
    );
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    for (let i = 0; i < samples; i++) {
      const before = await count(db, probe.apiKey.id);
      const res = await fetch(`${server.line}/tracked/orders/${i}`, {
        headers: { authorization: `Bearer ${probe.plaintext}` },
      });
      await res.arrayBuffer();
      const answered = performance.now();
      while ((await count(db, probe.apiKey.id)) <= before)
        await new Promise((resolve) => setTimeout(resolve, 5));
      delays.push(performance.now() - answered);
    }
  } finally {
    load?.stop();
    await done;
    await db.destroy();
    await server.stop();
    await worker.stop();
  }
  const p95 = percentile(delays, 0.95);
  return {
    title: '3. Freshness',
    lines: [
      `autocannon at a fixed ${fmt(rate)} req/s (achieved ${fmt(achieved)} req/s) on the tracked route, usage worker in its own process; ${samples} probe requests, each timed from its response to its event counted in \`api_key_usage_totals\` (polled every 5 ms). Flush interval 250 ms.`,
      '',
      `| p50 | p95 | p99 | max |`,
      '|---|---|---|---|',
      `| ${fmt(percentile(delays, 0.5))} ms | ${fmt(p95)} ms | ${fmt(percentile(delays, 0.99))} ms | ${fmt(Math.max(...delays))} ms |`,
    ],
    verdicts: [
      {
        claim: `response → visible in totals at ${fmt(rate)} req/s, p95`,
        target: '≤ 1 s',
        value: `${fmt(p95)} ms`,
        pass: p95 <= 1000,
      },
    ],
  };
}

async function count(db: ReturnType<typeof kysely>, keyId: string): Promise<number> {
  const { rows } = await sql<{
    n: number;
  }>`select request_count::int8 as n from api_key_usage_totals where key_id = ${keyId}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}
