/**
 * Scenario 5 — prune (§8): drop a month partition of 5M rows while ingest runs; report the drop
 * time and the longest ingest stall (the slowest ingest transaction during the drop, next to
 * the slowest before it).
 */
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { createIngester } from '../src/usage/usage.ingest.ts';
import { createDb } from '../src/platform/db.ts';
import { createLogger } from '../src/platform/logger.ts';
import { createMonthPartition, partitionName } from '../src/usage/usage.queries.ts';
import { prune } from '../src/usage/usage.prune.ts';
import type { UsageEvent } from '../src/usage/usage.types.ts';
import { makeKeys } from './ingest.ts';
import { fmt, kysely, quick, type Section } from './lib.ts';

export async function pruneScenario(url: string): Promise<Section> {
  const rows = quick ? 500_000 : 5_000_000;
  const { orgId, keyIds } = await makeKeys(url, 'bench-prune', 100);
  const db = kysely(url, 4);
  const old = new Date(Date.UTC(new Date().getUTCFullYear() - 2, 0, 1));
  await createMonthPartition(db as never, old.getUTCFullYear(), 1);
  await sql`insert into api_key_usage_events
      (event_id, org_id, key_id, occurred_at, method, route, status, latency_ms, ip, user_agent, outcome)
    select gen_random_uuid(), ${orgId}, ${keyIds[0]}::uuid, ${old}::timestamptz + (g * interval '500 ms'),
      'GET', '/v1/orders/:id', 200, 3, '10.0.0.1', 'bench', 'success'
    from generate_series(1, ${rows}) as g`.execute(db);
  await sql`checkpoint`.execute(db);

  const feeder = createDb({ url, poolSize: 2, logger: createLogger({ level: 'silent' }) });
  const ingester = createIngester(feeder);
  const latencies: { at: number; ms: number }[] = [];
  let running = true;
  const feed = (async () => {
    while (running) {
      const now = Date.now();
      const batch: UsageEvent[] = Array.from({ length: 500 }, (_, i) => ({
        eventId: uuidv7(),
        orgId,
        keyId: keyIds[i % keyIds.length] ?? '',
        occurredAt: now,
        method: 'GET',
        route: '/v1/orders/:id',
        status: 200,
        latencyMs: 2,
        ip: '10.0.0.2',
        userAgent: 'bench',
        outcome: 'success',
      }));
      const t = performance.now();
      await ingester.ingest(batch);
      latencies.push({ at: t, ms: performance.now() - t });
    }
  })();
  let started = 0;
  let pruneSeconds = 0;
  let report: Awaited<ReturnType<typeof prune>>;
  try {
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    started = performance.now();
    report = await prune(db as never, {
      now: new Date(),
      retentionDays: 90,
      hourlyRetentionDays: 35,
      rollupRetentionDays: 400,
      dryRun: false,
    });
    pruneSeconds = (performance.now() - started) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  } finally {
    // The feeder stops whatever happened, or the run would never end.
    running = false;
    await feed;
    await db.destroy();
    await feeder.close();
  }
  const target = report.partitions.find((p) => p.name === partitionName(old.getUTCFullYear(), 1));
  if (!target) throw new Error('the 5M-row partition was not dropped');
  const dropSeconds = target.detachSeconds + target.dropSeconds;
  const before = latencies.filter((l) => l.at < started);
  const during = latencies.filter(
    (l) => l.at + l.ms >= started && l.at <= started + pruneSeconds * 1000,
  );
  const worst = (xs: typeof latencies) => Math.max(0, ...xs.map((l) => l.ms));
  const typical = before.map((l) => l.ms).sort((a, b) => a - b)[Math.floor(before.length / 2)] ?? 0;
  return {
    title: '5. Prune',
    lines: [
      `A past month partition of ${fmt(rows)} rows dropped by \`prune\` (DETACH PARTITION … CONCURRENTLY, then DROP TABLE) while a feeder ingests 500-event batches (events + all rollups) into the current month back to back.`,
      '',
      `Partitions dropped: ${report.partitions.map((p) => p.name).join(', ')}. The whole prune (every expired partition, audit entries, rollup retention) took ${fmt(pruneSeconds * 1000)} ms; ingest is watched during all of it.`,
      '',
      '| | ms |',
      '|---|---|',
      `| DETACH … CONCURRENTLY of the ${fmt(rows)}-row partition | ${fmt(target.detachSeconds * 1000)} |`,
      `| DROP TABLE of it | ${fmt(target.dropSeconds * 1000)} |`,
      `| ingest batch, median before | ${fmt(typical)} |`,
      `| ingest batch, slowest before | ${fmt(worst(before))} |`,
      `| ingest batch, slowest during the drop | ${fmt(worst(during))} |`,
    ],
    verdicts: [
      {
        claim: `drop a ${fmt(rows)}-row month partition`,
        target: '≤ 1 s',
        value: `${fmt(dropSeconds * 1000)} ms`,
        pass: dropSeconds <= 1,
      },
      {
        claim: 'ingest not blocked (slowest batch during the prune vs before)',
        target: 'no stall',
        value: `${fmt(worst(during))} ms vs ${fmt(worst(before))} ms`,
        pass: worst(during) <= Math.max(2 * worst(before), 100),
      },
    ],
  };
}
