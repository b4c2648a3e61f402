/**
 * `node bench/worker-steps.ts`: the worker's JavaScript per event, step by step, in-process and
 * without Postgres: what one fetch of 8 jobs × 5,000 events costs to unpack, check, de-duplicate,
 * aggregate, encode as COPY text and turn into rollup statements (compiled and serialized as
 * pg would send them). Interleaved rounds; CPU from process.cpuUsage().
 */
import { randomUUID } from 'node:crypto';
import { Kysely, PostgresDialect } from 'kysely';
import { inflateRawSync } from 'node:zlib';
import pg from 'pg';
// @ts-expect-error pg's internals have no types; this is what pg runs on every parameter
import * as pgUtils from 'pg/lib/utils.js';
import { mergePayloads, type Batch } from '../src/usage/usage.batch.ts';
import { packEvents, unpackJob, type UsageJob } from '../src/usage/usage.jobs.ts';
import { aggregate, periodLabels } from '../src/usage/usage.aggregate.ts';
import {
  encodeEventsCopy,
  upsertPeriods,
  upsertRoutes,
  upsertTotals,
} from '../src/usage/usage.queries.ts';
import type { UsageEvent } from '../src/usage/usage.types.ts';
import { generate } from './ingest.ts';
import { fmt, median } from './lib.ts';

const JOBS = 8;
const PER_JOB = 5_000;
const KEYS = 1_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);

const events = (n: number): UsageEvent[] =>
  generate(
    randomUUID(),
    Array.from({ length: KEYS }, () => randomUUID()),
    n,
  );

// pg-boss hands the worker each job's data parsed from jsonb: a fresh object per fetch.
const asFetched = (jobs: UsageJob[]): unknown[] =>
  jobs.map((j) => JSON.parse(JSON.stringify(j)) as unknown);

const prepareValue = (pgUtils as { prepareValue: (v: unknown) => unknown }).prepareValue;
const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool() }) });
/** What pg does to a statement's parameters before it writes them to the socket. */
function serialize(q: {
  compile(db: Kysely<unknown>): { parameters: readonly unknown[] };
}): number {
  let bytes = 0;
  for (const p of q.compile(db).parameters) bytes += String(prepareValue(p)).length;
  return bytes;
}

const batchOf = (jobs: unknown[]): Batch =>
  mergePayloads(
    jobs.flatMap((j) => {
      const u = unpackJob(j);
      return 'payload' in u ? [u.payload] : [];
    }),
  );

function rollupStatements(all: Batch): void {
  const r = aggregate(all, periodLabels());
  serialize(upsertTotals(r.totals));
  serialize(upsertPeriods('api_key_usage_hourly', r.hourly));
  serialize(upsertPeriods('api_key_usage_daily', r.daily));
  serialize(upsertRoutes(r.routes));
}

type Step = { name: string; run: (jobs: unknown[], decoded: Batch) => void };

const STEPS: Step[] = [
  {
    name: 'inflate + JSON.parse',
    run: (jobs) => {
      for (const j of jobs)
        JSON.parse(inflateRawSync(Buffer.from((j as UsageJob).z, 'base64')).toString('utf8'));
    },
  },
  { name: 'unpack and merge (inflate, JSON, checks)', run: (jobs) => void batchOf(jobs) },
  { name: 'COPY text', run: (_, all) => void encodeEventsCopy(all) },
  { name: 'aggregate', run: (_, all) => void aggregate(all, periodLabels()) },
  { name: 'rollups: aggregate + statements', run: (_, all) => rollupStatements(all) },
  {
    name: 'all of the above, one ingest',
    run: (jobs) => {
      const all = batchOf(jobs);
      encodeEventsCopy(all);
      rollupStatements(all);
    },
  },
];

async function main(): Promise<void> {
  const all = events(JOBS * PER_JOB);
  const jobs: UsageJob[] = [];
  for (let i = 0; i < JOBS; i++)
    jobs.push(await packEvents(all.slice(i * PER_JOB, (i + 1) * PER_JOB)));
  const samples = new Map(STEPS.map((s) => [s.name, [] as number[]]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const step of STEPS) {
      const input = asFetched(jobs);
      const decoded = batchOf(asFetched(jobs));
      const before = process.cpuUsage();
      step.run(input, decoded);
      const used = process.cpuUsage(before);
      if (round >= 2) samples.get(step.name)?.push((used.user + used.system) / all.length);
    }
  }
  process.stdout.write(
    `| step (${JOBS} jobs × ${fmt(PER_JOB)} events, ${fmt(KEYS)} keys) | µs per event |\n|---|---|\n`,
  );
  for (const step of STEPS)
    process.stdout.write(`| ${step.name} | ${median(samples.get(step.name) ?? []).toFixed(2)} |\n`);
  await db.destroy();
}

await main();
