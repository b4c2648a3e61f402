/**
 * Fault injection for the usage worker: `keytrail worker` as a real child process (the CLI entry,
 * the project's Node), killed with SIGKILL at chosen moments. Nothing here runs in the test
 * runner's process but the spawning and the bookkeeping.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { sql, type QueryExecutorProvider } from 'kysely';
import { TEST_PEPPER } from '../src/testing/leak-scan.ts';
import { prng } from '../src/demo/sample-usage.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

export type WorkerProcess = {
  name: string;
  pid: number;
  /** Resolves once the worker logged 'usage worker started' (it is consuming usage.ingest). */
  ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines of its output (stdout and stderr), for failure messages. */
  tail(): string;
  child: ChildProcess;
};

/**
 * Starts `node bin/keytrail.ts worker` against `databaseUrl`. Its connections carry `name` as
 * application_name (a connection string's parameters win over pg's own options), so the test
 * can see in pg_stat_activity when this very process is inside an ingest transaction.
 */
export function spawnWorker(
  databaseUrl: string,
  name: string,
  extraEnv: Record<string, string> = {},
) {
  const url = new URL(databaseUrl);
  url.searchParams.set('application_name', name);
  const child = spawn(process.execPath, ['bin/keytrail.ts', 'worker'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: url.toString(),
      KEYTRAIL_KEY_PEPPER: TEST_PEPPER,
      KEYTRAIL_WORKER_METRICS_PORT: '0',
      KEYTRAIL_LOG_FORMAT: 'json',
      KEYTRAIL_LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString('utf8')).slice(-20_000));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const ready = new Promise<void>((resolve, reject) => {
    const onData = () => {
      if (output.includes('usage worker started')) resolve();
    };
    child.stdout.on('data', (chunk: Buffer) => {
      keep(chunk);
      onData();
    });
    child.stderr.on('data', keep);
    void exited.then(({ code, signal }) =>
      reject(new Error(`worker ${child.pid} exited before ready (${code ?? signal}): ${output}`)),
    );
  });
  // A worker killed before it was ready is not a failure of the caller unless it awaits `ready`.
  ready.catch(() => undefined);
  return {
    name,
    pid: child.pid ?? 0,
    ready,
    exited,
    tail: () => output.split('\n').slice(-15).join('\n'),
    child,
  } satisfies WorkerProcess;
}

/** SIGKILL: no handler runs, no transaction commits, no pg-boss job is settled. */
export async function killHard(worker: WorkerProcess): Promise<void> {
  if (worker.child.exitCode === null && worker.child.signalCode === null)
    worker.child.kill('SIGKILL');
  await worker.exited;
}

/** SIGTERM and wait (graceful stop); SIGKILL after `timeoutMs`. */
export async function stopGracefully(worker: WorkerProcess, timeoutMs = 15_000): Promise<void> {
  if (worker.child.exitCode !== null || worker.child.signalCode !== null) return;
  worker.child.kill('SIGTERM');
  const timer = setTimeout(() => worker.child.kill('SIGKILL'), timeoutMs);
  await worker.exited;
  clearTimeout(timer);
}

/** A small seeded PRNG (mulberry32): a failing run can be replayed with its seed. */
export const seededRandom = (seed: number): (() => number) => prng(seed);

export type IngestQueueState = {
  created: number;
  retry: number;
  active: number;
  failed: number;
  completed: number;
  /** Completed jobs that had been handed out more than once (a kill caught them active). */
  retried: number;
  /** Oldest active job: seconds since it started, and the expiry it waits for. */
  oldestActiveSeconds: number | null;
  expireSeconds: number | null;
  deadLettered: number;
};

/** What pg-boss holds for usage.ingest (and its dead-letter queue), by state. */
export async function ingestQueueState(db: QueryExecutorProvider): Promise<IngestQueueState> {
  const { rows } = await sql<{
    name: string;
    state: string;
    n: number;
    retried: number;
    oldest: number | null;
    expire: number | null;
  }>`
    select name, state::text as state, count(*)::int as n,
      count(*) filter (where retry_count > 0)::int as retried,
      extract(epoch from now() - min(started_on) filter (where state = 'active'))::float8 as oldest,
      max(expire_seconds)::int as expire
    from pgboss.job where name in ('usage.ingest', 'usage.ingest.dead')
    group by name, state`.execute(db);
  const of = (state: string) => rows.find((r) => r.name === 'usage.ingest' && r.state === state);
  return {
    created: of('created')?.n ?? 0,
    retry: of('retry')?.n ?? 0,
    active: of('active')?.n ?? 0,
    failed: of('failed')?.n ?? 0,
    completed: of('completed')?.n ?? 0,
    retried: rows.filter((r) => r.name === 'usage.ingest').reduce((s, r) => s + r.retried, 0),
    oldestActiveSeconds: of('active')?.oldest ?? null,
    expireSeconds: of('active')?.expire ?? of('completed')?.expire ?? null,
    deadLettered: rows.filter((r) => r.name === 'usage.ingest.dead').reduce((s, r) => s + r.n, 0),
  };
}

/**
 * Names of the workers (application_name) with an ingest transaction open right now: a COPY or
 * rollup upsert running, or between two statements of the batch transaction.
 */
export async function workersInIngest(
  db: QueryExecutorProvider,
  names: readonly string[],
  phase = '%',
): Promise<string[]> {
  if (names.length === 0) return [];
  const { rows } = await sql<{ name: string }>`
    select distinct application_name as name from pg_stat_activity
    where application_name in (${sql.join(names)}) and xact_start is not null
      and (query ilike '%api_key_usage%' or query ilike 'savepoint%'
        or query ilike 'rollback to savepoint%') and query ilike ${phase}`.execute(db);
  return rows.map((r) => r.name);
}
