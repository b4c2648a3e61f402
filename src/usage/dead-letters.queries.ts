/**
 * Reads of pg-boss's job table for the dead-letter gauge and the replay's cutoff. pg-boss's own
 * API (previewRedrive) runs on its small pool with no deadline and reads every matching row; these
 * run on keytrail's background pool, bounded in rows and time.
 */
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';

export type WaitingJobs = {
  /** Waiting jobs, counted up to `limit + 1`: a value above `limit` means "more than limit". */
  jobs: number;
  /** Of those counted, the ones pg-boss deletes (keep_until) within `expiringDays`. */
  expiring: number;
};

/**
 * Jobs of `queue` waiting (created or retry), in one statement cancelled past `timeoutMs` (lock
 * waits included: a locked job table fails the count instead of holding a connection). The inner
 * LIMIT bounds the rows read whatever the backlog; pg-boss's index on live jobs by (name, state,
 * ...) (job_i14) serves the scan.
 */
export async function countWaitingJobs(
  db: Kysely<DB>,
  options: { queue: string; limit: number; expiringDays: number; timeoutMs: number },
): Promise<WaitingJobs> {
  return db.transaction().execute(async (tx) => {
    // SET LOCAL takes no bind parameter; set_config(..., true) is its bound form.
    await sql`select set_config('statement_timeout', ${String(options.timeoutMs)}, true)`.execute(
      tx,
    );
    const { rows } = await sql<WaitingJobs>`
      select count(*)::int as jobs,
        count(*) filter (
          where keep_until < now() + make_interval(days => ${options.expiringDays})
        )::int as expiring
      from (
        select keep_until from pgboss.job
        where name = ${options.queue} and state in ('created', 'retry')
        limit ${options.limit + 1}
      ) s`.execute(tx);
    return rows[0] ?? { jobs: 0, expiring: 0 };
  });
}
