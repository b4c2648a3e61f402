/**
 * Shared plumbing of the benchmark scenarios: a database (DATABASE_URL's server or a fresh
 * embedded cluster), child processes, timing and statistics, and the report.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/platform/embedded-postgres.ts';
import { migrateToLatest } from '../src/platform/db.ts';
import { createLogger } from '../src/platform/logger.ts';
import { ensureQueues, startQueue } from '../src/platform/queue.ts';
import { QUEUES } from '../src/usage/usage.queues.ts';
import { ensurePartitionsAhead } from '../src/usage/usage.partitions.ts';
import { adminQuery, databaseUrl } from '../src/testing/databases.ts';
import { parseEnv, toConfig, type Config } from '../src/platform/config.ts';

export const PEPPER = 'bench-pepper-0123456789abcdef0123456789abcdef';
export const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';

export type Db = { url: string; stop(): Promise<void> };

/** A fresh, migrated database with pg-boss installed, on DATABASE_URL's server or embedded. */
export async function freshDatabase(name: string): Promise<Db> {
  const external = process.env.DATABASE_URL;
  const server = external
    ? { url: external, stop: () => Promise.resolve() }
    : await startEmbeddedPostgres({
        dataDir: `/tmp/keytrail-bench-${process.pid}/pg`,
        persistent: false,
        ...(process.env.BENCH_PG_LOG && { logFile: process.env.BENCH_PG_LOG }),
        postgresFlags: [
          '-c',
          'shared_buffers=512MB',
          '-c',
          'max_wal_size=4GB',
          '-c',
          'max_connections=200',
        ],
      });
  await adminQuery(server.url, `drop database if exists "${name}" with (force)`);
  await adminQuery(server.url, `create database "${name}"`);
  const url = databaseUrl(server.url, name);
  await prepareDatabase(url);
  return {
    url,
    async stop() {
      await server.stop();
      await rm(`/tmp/keytrail-bench-${process.pid}`, { recursive: true, force: true });
    },
  };
}

/** Migrated, with this month's partition and the next two, and pg-boss's queues. */
export async function prepareDatabase(url: string): Promise<void> {
  const db = kysely(url);
  await migrateToLatest(db);
  await ensurePartitionsAhead(db as never, new Date(), 2);
  await db.destroy();
  const boss = await startQueue({
    url,
    logger: createLogger({ level: 'silent' }),
    maintenance: false,
  });
  await ensureQueues(boss, QUEUES);
  await boss.stop({ graceful: false, close: true });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- scenarios write raw SQL on any table
export function kysely(url: string, max = 4): Kysely<any> {
  return new Kysely({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max }) }),
  });
}

export function benchConfig(url: string, overrides: Partial<Config> = {}): Config {
  const env = parseEnv({ KEYTRAIL_LOG_LEVEL: 'warn' });
  return {
    ...toConfig(env, { databaseUrl: url, keyPepper: PEPPER, embedded: false }),
    ...overrides,
  };
}

/** Starts a TypeScript child with the project's Node; resolves with its first stdout line. */
export async function child(
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ proc: ChildProcess; line: string; stop(): Promise<void> }> {
  const proc = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout }).once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`${script} exited (${code})`)));
  });
  return {
    proc,
    line,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

export const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? 0;
};

export const fmt = (n: number, digits = 2): string =>
  n >= 1000 ? Math.round(n).toLocaleString('en-US') : n.toFixed(digits);

export async function machine(url: string): Promise<string[]> {
  const db = kysely(url, 1);
  const { rows } = await sql<{ v: string }>`select version() as v`.execute(db);
  await db.destroy();
  const cpu = cpus();
  return [
    `CPU: ${cpu.length} × ${cpu[0]?.model ?? 'unknown'}`,
    `Memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `Node: ${process.version}`,
    `PostgreSQL: ${(rows[0]?.v ?? '').split(' on ')[0]}`,
  ];
}

/** Reads a process's resident set size (Linux). */
export function rssKb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

export type Section = {
  title: string;
  lines: string[];
  verdicts: { claim: string; target: string; value: string; pass: boolean }[];
};

/** The environment of `keytrail serve` / `keytrail worker` children of the HTTP benchmarks. */
export const keytrailEnv = (dbUrl: string): Record<string, string> => ({
  DATABASE_URL: dbUrl,
  KEYTRAIL_KEY_PEPPER: PEPPER,
  KEYTRAIL_LOG_LEVEL: 'warn',
  KEYTRAIL_DEMO_ROUTES: 'true',
  KEYTRAIL_WORKER_METRICS_PORT: '0',
  PORT: '0',
  HOST: '127.0.0.1',
});

/** Serves a bench child's app on a free port, prints its URL; on SIGTERM closes and exits. */
export function serveUntilSigterm(app: RequestListener, close: () => Promise<unknown>): void {
  const server = createServer(app);
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
  });
  process.on('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    void close().then(() => process.exit(0));
  });
}
