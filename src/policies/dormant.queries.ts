/**
 * SQL of the dormant-key policies (SPEC §10). The dormant rule is the org usage page's: an
 * active key whose last use (or creation, when never used) is before `before`.
 */
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { DormantAction, DormantRule, StoredPolicy } from './dormant.types.ts';

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
    ])
    .where('org_id', '=', orgId)
    .executeTakeFirst() as Promise<StoredPolicy | undefined>;
}

/** Creates or replaces the org's policy. */
export async function savePolicy(
  trx: Db,
  orgId: string,
  policy: Omit<StoredPolicy, 'updated_at' | 'updated_by_key_id'>,
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
 */
export function dormantCandidates(
  orgId: string,
  rule: DormantRule & { action: DormantAction },
  at: { now: Date; before: Date },
  o: {
    after?: DormantCandidate | undefined;
    ids?: readonly string[];
    lock?: boolean;
    limit: number;
  },
) {
  const lastSeen = sql`coalesce(t.last_used_at, k.created_at)`;
  const after = o.after
    ? sql`(${lastSeen}, k.id) > (${o.after.last_used_at ?? o.after.created_at}, ${o.after.id}::uuid)`
    : sql`true`;
  return sql<DormantCandidate>`
    select k.id, k.org_id, k.name, k.prefix, k.environment, k.scopes, k.created_at, t.last_used_at
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
    order by ${lastSeen}, k.id
    limit ${o.limit}
    ${o.lock ? sql`for update of k skip locked` : sql``}`;
}

export async function markRevokedByPolicy(
  trx: Db,
  ids: readonly string[],
  at: Date,
  reason: string,
): Promise<void> {
  await trx
    .updateTable('api_keys')
    .set({ revoked_at: at, revoked_reason: reason })
    .where('id', '=', sql<string>`any(${ids}::uuid[])`)
    .execute();
}

export async function markNotified(trx: Db, ids: readonly string[], at: Date): Promise<void> {
  await trx
    .updateTable('api_keys')
    .set({ dormant_notified_at: at })
    .where('id', '=', sql<string>`any(${ids}::uuid[])`)
    .execute();
}

/** Postgres's clock: the queue's job times are in it. */
export async function databaseNow(db: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(db);
  return rows[0]?.now ?? new Date();
}

/** Whether a usage job queued before `before` (Postgres's clock) is still to be ingested. */
export async function usagePendingBefore(db: Db, before: Date): Promise<boolean> {
  const { rows } = await sql<{ pending: boolean }>`select exists (
      select 1 from pgboss.job where name = 'usage.ingest'
        and state in ('created', 'retry', 'active') and created_on < ${before}) as pending`.execute(
    db,
  );
  return rows[0]?.pending ?? false;
}
