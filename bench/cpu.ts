/**
 * CPU accounting for the HTTP benchmarks: utime + stime of processes from /proc (Linux), and a
 * load run that reports each process's CPU per request beside req/s and latency.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { sql, type Kysely } from 'kysely';
import autocannon from 'autocannon';

const TICK_US = 1_000_000 / 100; // USER_HZ is 100 on Linux

function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of a process (all its threads), in µs. */
export function cpuUs(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) * TICK_US;
}

/**
 * CPU of a PostgreSQL cluster, in µs: the postmaster, its living children (backends, walwriter,
 * autovacuum…), and the children it has reaped (cutime + cstime), so a backend whose connection
 * closed during the run still counts.
 */
export function clusterCpuUs(postmaster: number): number {
  const f = statFields(postmaster);
  let total = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK_US;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const child = statFields(Number(entry));
      if (Number(child[1]) === postmaster)
        total += (Number(child[11]) + Number(child[12])) * TICK_US;
    } catch {
      // gone meanwhile: reaped, so in the postmaster's cutime
    }
  }
  return total;
}

/** The postmaster's pid, when the cluster's data directory is on this machine. */
export async function postmasterPid(db: Kysely<unknown>): Promise<number | undefined> {
  try {
    const { rows } = await sql<{
      dir: string;
    }>`select current_setting('data_directory') as dir`.execute(db);
    return Number(readFileSync(`${rows[0]?.dir}/postmaster.pid`, 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
}

/** A process to account: a pid, or a function returning its cumulative CPU in µs. */
export type Accounted = number | (() => number);
const read = (p: Accounted): number => (typeof p === 'number' ? cpuUs(p) : p());

export type LoadTarget = {
  url: string;
  method?: 'GET' | 'POST';
  body?: string;
  headers?: Record<string, string>;
  connections?: number;
  /** Requests per second for all connections together (open loop); absent: as fast as it goes. */
  rate?: number;
  /** Awaited after the load, before the CPU is read (e.g. until the work it queued is done). */
  settle?: () => Promise<void>;
  /** Processes whose CPU is reported per request, by name. */
  pids: Record<string, Accounted>;
};

export type Load = {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  /** µs of CPU per request, by process name. */
  cpuUs: Record<string, number>;
};

/** Loads a target for `seconds`; fails on any non-2xx answer or socket error. */
export async function loadWithCpu(t: LoadTarget, seconds: number): Promise<Load> {
  const before = Object.fromEntries(Object.entries(t.pids).map(([k, p]) => [k, read(p)]));
  const result = await autocannon({
    url: t.url,
    connections: t.connections ?? 32,
    duration: seconds,
    ...(t.rate && { overallRate: t.rate }),
    method: t.method ?? 'GET',
    headers: { ...(t.body && { 'content-type': 'application/json' }), ...t.headers },
    ...(t.body && { body: t.body }),
  });
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${t.url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  await t.settle?.();
  const requests = result.requests.total;
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests,
    cpuUs: Object.fromEntries(
      Object.entries(t.pids).map(([k, p]) => [k, (read(p) - (before[k] ?? 0)) / requests]),
    ),
  };
}
