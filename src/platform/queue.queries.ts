/** SQL keytrail runs against pg-boss's own tables, through pg-boss's connection. */
import type { PgBoss } from 'pg-boss';

/**
 * Brings the deletion time of the jobs already waiting in `queue` to its retention as configured
 * now. pg-boss stamps keep_until when a job is created (start_after + retention) and
 * `updateQueue` leaves existing jobs as they were, so a longer retention would not protect the
 * jobs already waiting, and a shorter one would not apply to them. Returns the jobs updated.
 */
export async function applyRetentionToWaitingJobs(
  boss: PgBoss,
  queue: string,
  retentionSeconds: number,
): Promise<number> {
  const { rows } = await boss.getDb().executeSql(
    `with updated as (
       update pgboss.job set keep_until = start_after + make_interval(secs => $2)
       where name = $1 and state in ('created', 'retry')
       returning 1
     )
     select count(*)::int as n from updated`,
    [queue, retentionSeconds],
  );
  return (rows[0] as { n?: number } | undefined)?.n ?? 0;
}
