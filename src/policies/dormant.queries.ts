/**
 * SQL of the dormant-key policies (SPEC §10). The dormant rule is the org usage page's: an
 * active key whose last use (or creation, when never used) is before `before`.
 */
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import { ADMIN_SCOPE } from '../keys/keys.types.ts';
import { USAGE_DEAD_LETTER_QUEUE, USAGE_INGEST_QUEUE } from '../usage/usage.jobs.ts';
import type { DormantAction, DormantRule, PolicyRun, StoredPolicy } from './dormant.types.ts';

type Db = Kysely<DB>;

export type DormantCandidate = {
  id: string;
  org_id: string;
  name: string;
  prefix: string;
  environment: string;
  scopes: string[];
  created_at: Date;
  last_used_at: Date | null;
  dormant_notified_at: Date | null;
};

export async function findPolicy(db: Db, orgId: string): Promise<StoredPolicy | undefined> {
  return db
    .selectFrom('dormant_key_policies')
    .select([
      'enabled',
      'after_days',
      'action',
      'exclude_environments',
      'exclude_scopes',
      'acting_scopes',
      'updated_at',
      'updated_by_key_id',
      'last_run_at',
      'last_run',
    ])
    .where('org_id', '=', orgId)
    .executeTakeFirst() as Promise<StoredPolicy | undefined>;
}

/** What the daily run did with the org's policy. */
export async function recordRun(db: Db, orgId: string, at: Date, run: PolicyRun): Promise<void> {
  await db
    .updateTable('dormant_key_policies')
    .set({ last_run_at: at, last_run: JSON.stringify(run) })
    .where('org_id', '=', orgId)
    .execute();
}

/** Creates or replaces the org's policy. */
export async function savePolicy(
  trx: Db,
  orgId: string,
  policy: Omit<StoredPolicy, 'updated_at' | 'updated_by_key_id' | 'last_run_at' | 'last_run'>,
  by: { at: Date; keyId: string | null },
): Promise<void> {
  const row = {
    enabled: policy.enabled,
    after_days: policy.after_days,
    action: policy.action,
    exclude_environments: policy.exclude_environments,
    exclude_scopes: policy.exclude_scopes,
    acting_scopes: policy.acting_scopes,
    updated_at: by.at,
    updated_by_key_id: by.keyId,
  };
  await trx
    .insertInto('dormant_key_policies')
    .values({ org_id: orgId, ...row })
    .onConflict((oc) => oc.column('org_id').doUpdateSet(row))
    .execute();
}

/** Orgs whose policy is on, in a stable order. */
export async function enabledPolicyOrgs(db: Db): Promise<string[]> {
  const rows = await db
    .selectFrom('dormant_key_policies')
    .select('org_id')
    .where('enabled', '=', true)
    .orderBy('org_id')
    .execute();
  return rows.map((r) => r.org_id);
}

/**
 * The keys `rule` acts on now: dormant, not excluded, and for `notify` not yet notified in this
 * dormant spell (a notice older than the key's last use belongs to an earlier spell). `lock`:
 * the rows are locked for this transaction, skipping rows another run holds (it acts on them).
 * Every lock of a pass is FOR NO KEY UPDATE: it serialises with revocations and other passes
 * (both update the row) but not with the FOR KEY SHARE that ingest's rollup inserts take through
 * their foreign keys to api_keys, so ingest never waits behind a run (nor deadlocks with it).
 */
export function dormantCandidates(
  orgId: string,
  rule: DormantRule & { action: DormantAction },
  at: { now: Date; before: Date },
  o: {
    after?: DormantCandidate | undefined;
    ids?: readonly string[];
    /** Keys the pass spares (the org's last admin key, the policy's author). */
    exclude?: readonly string[];
    lock?: boolean;
    limit: number;
  },
) {
  const lastSeen = sql`coalesce(t.last_used_at, k.created_at)`;
  const after = o.after
    ? sql`(${lastSeen}, k.id) > (${o.after.last_used_at ?? o.after.created_at}, ${o.after.id}::uuid)`
    : sql`true`;
  return sql<DormantCandidate>`
    select k.id, k.org_id, k.name, k.prefix, k.environment, k.scopes, k.created_at, t.last_used_at,
      k.dormant_notified_at
    from api_keys k
    left join api_key_usage_totals t on t.key_id = k.id and t.org_id = k.org_id
    where k.org_id = ${orgId}
      and k.revoked_at is null and (k.expires_at is null or k.expires_at > ${at.now})
      and ${lastSeen} < ${at.before}
      and not (k.environment = any(${rule.excludeEnvironments}::text[]))
      and not (k.scopes && ${rule.excludeScopes}::text[])
      and ${rule.coveredBy === null ? sql`true` : sql`k.scopes <@ ${rule.coveredBy}::text[]`}
      and ${
        rule.action === 'notify'
          ? sql`(k.dormant_notified_at is null or k.dormant_notified_at < ${lastSeen})`
          : sql`true`
      }
      and ${after}
      and ${o.ids ? sql`k.id = any(${o.ids}::uuid[])` : sql`true`}
      and ${o.exclude?.length ? sql`not (k.id = any(${o.exclude}::uuid[]))` : sql`true`}
    order by ${lastSeen}, k.id
    limit ${o.limit}
    ${o.lock ? sql`for no key update of k skip locked` : sql``}`;
}

export async function markRevokedByPolicy(
  trx: Db,
  orgId: string,
  ids: readonly string[],
  at: Date,
  reason: string,
): Promise<void> {
  await trx
    .updateTable('api_keys')
    .set({ revoked_at: at, revoked_reason: reason })
    .where('org_id', '=', orgId)
    .where('id', '=', sql<string>`any(${ids}::uuid[])`)
    .execute();
}

export async function markNotified(
  trx: Db,
  orgId: string,
  ids: readonly string[],
  at: Date,
): Promise<void> {
  await trx
    .updateTable('api_keys')
    .set({ dormant_notified_at: at })
    .where('org_id', '=', orgId)
    .where('id', '=', sql<string>`any(${ids}::uuid[])`)
    .execute();
}

/**
 * Usage jobs queued before `before` (Postgres's clock) and not ingested yet, with the orgs whose
 * events each carries (null: a job queued by an earlier version without the list, so possibly
 * anyone's). Read once per run: it reads every pending job's payload.
 */
export async function pendingUsageJobs(
  db: Db,
  before: Date,
): Promise<{ id: string; orgs: string[] | null }[]> {
  const { rows } = await sql<{ id: string; orgs: string[] | null }>`
    select id, ${jobOrgs} as orgs
    from pgboss.job where name = ${USAGE_INGEST_QUEUE}
      and state in ('created', 'retry', 'active') and created_on < ${before}`.execute(db);
  return rows;
}

const jobOrgs = sql`case when jsonb_typeof(data->'orgs') = 'array' then data->'orgs' end`;

/**
 * The orgs whose events wait in dead-lettered usage jobs (until `keytrail ingest replay-dead`),
 * distinct; `all`: some job carries no orgs list, so it may hold anyone's. Read once per run
 * (it reads the dead jobs' payloads; normally there are none). A job that fails for good during
 * the run is seen through its state instead (usageJobStates).
 */
export async function deadLetteredOrgs(db: Db): Promise<{ all: boolean; orgs: string[] }> {
  const { rows } = await sql<{ org: string | null }>`
    select distinct o.org
    from pgboss.job j
    left join lateral jsonb_array_elements_text(${jobOrgs}) as o(org) on true
    where j.name = ${USAGE_DEAD_LETTER_QUEUE} and j.state in ('created', 'retry', 'active')`.execute(
    db,
  );
  return {
    all: rows.some((r) => r.org === null),
    orgs: rows.flatMap((r) => (r.org === null ? [] : [r.org])),
  };
}

/**
 * Which of the usage jobs `ids` are still to be ingested, and which failed for good (retries
 * spent: pg-boss dead-lettered a copy, so their events wait for a replay). By primary key: no
 * payload read.
 */
export async function usageJobStates(
  db: Db,
  ids: readonly string[],
): Promise<{ pending: Set<string>; failed: Set<string> }> {
  if (ids.length === 0) return { pending: new Set(), failed: new Set() };
  const { rows } = await sql<{ id: string; state: string }>`
    select id, state from pgboss.job where name = ${USAGE_INGEST_QUEUE} and id = any(${ids}::uuid[])
      and state in ('created', 'retry', 'active', 'failed')`.execute(db);
  const of = (failed: boolean) =>
    new Set(rows.filter((r) => (r.state === 'failed') === failed).map((r) => r.id));
  return { pending: of(false), failed: of(true) };
}

/** Row lock on one key (the policy's author, taken after the admin keys). */
export async function lockKey(db: Db, orgId: string, keyId: string): Promise<void> {
  await sql`select id from api_keys where org_id = ${orgId} and id = ${keyId}
    for no key update`.execute(db);
}

/**
 * The org's active `org:admin` keys, in id order; `rotating`: replaced by a rotation, active
 * only until its overlap ends. `lock` takes them FOR NO KEY UPDATE, before any other key lock of a
 * revoking pass (always in this order: no deadlock), so passes and revocations by hand
 * serialise on them and each counts the keys the others left.
 */
export function activeAdminKeys(orgId: string, now: Date, lock: boolean) {
  return sql<{ id: string; rotating: boolean; expires_at: Date | null }>`
    select k.id, k.expires_at,
      exists (select 1 from api_keys s
        where s.org_id = ${orgId} and s.rotated_from_id = k.id) as rotating
    from api_keys k
    where k.org_id = ${orgId} and ${ADMIN_SCOPE} = any(k.scopes)
      and k.revoked_at is null and (k.expires_at is null or k.expires_at > ${now})
    order by k.id
    ${lock ? sql`for no key update of k` : sql``}`;
}

/**
 * The key a policy was saved with as it is now, or a key that replaced it by rotation (same
 * scopes by construction): the newest active one of the chain, the original included, so
 * rotating the author's key keeps the policy's authority and revoking one successor does not
 * end it while another key of the chain is active. When none is active, the newest (its state
 * says why the authority is lost). Undefined: no such key in the org.
 */
export async function authorKey(db: Db, orgId: string, keyId: string, now: Date) {
  const { rows } = await sql<{
    id: string;
    scopes: string[];
    revoked_at: Date | null;
    expires_at: Date | null;
  }>`
    with recursive chain as (
      select id, scopes, revoked_at, expires_at, created_at, 0 as depth
      from api_keys where org_id = ${orgId} and id = ${keyId}
      union all
      select s.id, s.scopes, s.revoked_at, s.expires_at, s.created_at, c.depth + 1
      from chain c join api_keys s on s.rotated_from_id = c.id and s.org_id = ${orgId}
      where c.depth < 100
    )
    select id, scopes, revoked_at, expires_at from chain
    order by (revoked_at is null and (expires_at is null or expires_at > ${now})) desc,
      depth desc, created_at desc, id desc
    limit 1`.execute(db);
  return rows[0];
}

/** Whether the downgrade for `reason` was audited since the policy was saved (`since`). */
export async function downgradeAudited(
  db: Db,
  orgId: string,
  since: Date,
  reason: string,
): Promise<boolean> {
  const row = await db
    .selectFrom('audit_events')
    .select('id')
    .where('org_id', '=', orgId)
    .where('occurred_at', '>=', since)
    .where('action', '=', 'policy.downgraded')
    .where(sql<string>`details->>'reason'`, '=', reason)
    .executeTakeFirst();
  return row !== undefined;
}
