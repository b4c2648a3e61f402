import { sql, type Kysely, type Selectable } from 'kysely';
import type { ApiKeys, DB } from '../../db/schema.ts';
import type { Environment } from './key-format.ts';
import { statusOf, type ApiKey, type AuthRecord, type KeyStatus } from './keys.types.ts';
import { compileLimits, policiesFromJson, policiesToJson } from '../limits/key-limits.ts';
import type { RatePolicy } from '../limits/limits.types.ts';
import { onCitus } from '../platform/db.ts';

type Db = Kysely<DB>;

/** The refill period `now()` falls in, for a quota row `kq` (null: no refill). */
const CURRENT_PERIOD = sql`case kq.refill_interval
  when 'day' then date_trunc('day', now(), 'UTC')
  when 'month' then date_trunc('month', now(), 'UTC') end`;

/** Channel on which every change to a key's authentication state is announced. */
export const KEY_CHANGED_CHANNEL = 'keytrail_key_changed';

export type NewKeyRow = {
  id: string;
  orgId: string;
  name: string;
  environment: Environment;
  prefix: string;
  keyHash: Buffer;
  scopes: string[];
  expiresAt: Date | null;
  rotatedFromId: string | null;
  createdByKeyId: string | null;
  createdAt: Date;
  allowedIps: string[];
  rateLimits: RatePolicy[];
  /** What the key's limits count against: a rotated key shares its predecessor's. */
  limitsId: string | null;
};

export async function insertKey(db: Db, row: NewKeyRow): Promise<void> {
  await db
    .insertInto('api_keys')
    .values({
      id: row.id,
      org_id: row.orgId,
      name: row.name,
      environment: row.environment,
      prefix: row.prefix,
      key_hash: row.keyHash,
      scopes: row.scopes,
      expires_at: row.expiresAt,
      rotated_from_id: row.rotatedFromId,
      created_by_key_id: row.createdByKeyId,
      created_at: row.createdAt,
      allowed_ips: row.allowedIps,
      rate_limits: JSON.stringify(policiesToJson(row.rateLimits)),
      limits_id: row.limitsId,
    })
    .execute();
  // In the same transaction: the hash is unique across orgs (its primary key) and found by
  // authentication before the org is known (docs/adr/0015-citus.md).
  await db
    .insertInto('api_key_hashes')
    .values({ key_hash: row.keyHash, org_id: row.orgId, key_id: row.id })
    .execute();
}

/**
 * The authentication lookup: the hash's org and key (api_key_hashes' primary key) and the key
 * with its org's default rate limits (primary keys). One statement on PostgreSQL; on Citus two,
 * so the key's read names its org and runs on one shard (the hash table is a reference table,
 * read on the coordinator). Returns the stored hash for the compare.
 */
export async function findAuthRecordByHash(
  db: Db,
  keyHash: Buffer,
): Promise<(AuthRecord & { keyHash: Buffer }) | null> {
  let owner: { org_id: string; key_id: string } | undefined;
  if (await onCitus(db)) {
    owner = await db
      .selectFrom('api_key_hashes')
      .select(['org_id', 'key_id'])
      .where('key_hash', '=', keyHash)
      .executeTakeFirst();
    if (!owner) return null;
  }
  const query = db
    .selectFrom('api_keys as k')
    .leftJoin('org_rate_limit_defaults as d', 'd.org_id', 'k.org_id')
    .leftJoin('key_quotas as kq', (join) =>
      join.on(sql<boolean>`kq.subject = coalesce(k.limits_id, k.id)`),
    )
    .select([
      'kq.generation as quota_generation',
      'k.id',
      'k.org_id',
      'k.environment',
      'k.prefix',
      'k.scopes',
      'k.expires_at',
      'k.revoked_at',
      'k.key_hash',
      'k.limits_id',
      'k.rate_limits',
      'd.rate_limits as org_rate_limits',
      sql<string[]>`k.allowed_ips::text[]`.as('allowed_ips'),
    ]);
  const row = await (
    owner
      ? query.where('k.org_id', '=', owner.org_id).where('k.id', '=', owner.key_id)
      : query
          .innerJoin('api_key_hashes as h', (join) =>
            join.onRef('h.org_id', '=', 'k.org_id').onRef('h.key_id', '=', 'k.id'),
          )
          .where('h.key_hash', '=', keyHash)
  ).executeTakeFirst();
  if (!row) return null;
  return {
    id: row.id,
    orgId: row.org_id,
    environment: row.environment as Environment,
    prefix: row.prefix,
    scopes: row.scopes,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    keyHash: row.key_hash,
    limits: compileLimits({
      keyId: row.id,
      limitsId: row.limits_id,
      allowedIps: row.allowed_ips,
      rateLimits: policiesFromJson(row.rate_limits),
      orgRateLimits: policiesFromJson(row.org_rate_limits),
      quotaGeneration: row.quota_generation,
    }),
  };
}

const KEY_COLUMNS = [
  'k.id',
  'k.org_id',
  'k.name',
  'k.environment',
  'k.prefix',
  'k.scopes',
  'k.created_at',
  'k.expires_at',
  'k.revoked_at',
  'k.revoked_reason',
  'k.rotated_from_id',
  'k.limits_id',
  'k.rate_limits',
  sql<string[]>`k.allowed_ips::text[]`.as('allowed_ips'),
  't.last_used_at',
  't.last_used_ip',
  't.request_count',
] as const;

type KeyRow = Omit<
  Selectable<ApiKeys>,
  | 'key_hash'
  | 'created_by_key_id'
  | 'expiry_audited_at'
  | 'dormant_notified_at'
  | 'expiring_notice_for'
  | 'expiring_notice_days'
  | 'spike_since'
  | 'revoked_use_notified_at'
  | 'rate_limited_notified_at'
> & {
  last_used_at: Date | null;
  last_used_ip: string | null;
  request_count: number | null;
  quota_limit: number | null;
  refill_interval: string | null;
  refill_amount: number | null;
  quota_remaining: string | null;
};

function toApiKey(row: KeyRow, now: Date): ApiKey {
  return {
    id: row.id,
    orgId: row.org_id,
    name: row.name,
    environment: row.environment as Environment,
    prefix: row.prefix,
    scopes: row.scopes,
    status: statusOf({ revokedAt: row.revoked_at, expiresAt: row.expires_at }, now),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    revokedReason: row.revoked_reason,
    rotatedFromId: row.rotated_from_id,
    lastUsedAt: row.last_used_at,
    lastUsedIp: row.last_used_ip,
    requestCount: row.request_count ?? 0,
    allowedIps: row.allowed_ips,
    limitsId: row.limits_id ?? row.id,
    rateLimits: policiesFromJson(row.rate_limits),
    quota:
      row.quota_limit === null
        ? null
        : {
            limit: Number(row.quota_limit),
            remaining: Number(row.quota_remaining),
            refill:
              row.refill_interval === null
                ? null
                : {
                    interval: row.refill_interval as 'day' | 'month',
                    amount: Number(row.refill_amount),
                  },
          },
  };
}

function keysWithTotals(db: Db) {
  return db
    .selectFrom('api_keys as k')
    .leftJoin('api_key_usage_totals as t', (join) =>
      join.onRef('t.org_id', '=', 'k.org_id').onRef('t.key_id', '=', 'k.id'),
    )
    .leftJoin('key_quotas as kq', (join) =>
      join.on(sql<boolean>`kq.subject = coalesce(k.limits_id, k.id)`),
    )
    .select(KEY_COLUMNS)
    .select([
      'kq.quota_limit',
      'kq.refill_interval',
      'kq.refill_amount',
      // What no instance holds; a period that began since the last take reads as refilled.
      sql<string | null>`case when kq.refill_interval is not null and ${CURRENT_PERIOD}
        > coalesce(kq.period_start, '-infinity') then kq.refill_amount else kq.pool end`.as(
        'quota_remaining',
      ),
    ]);
}

/** Scoped by org: a key of another org reads as absent. */
export async function findKey(
  db: Db,
  orgId: string,
  keyId: string,
  now: Date,
  options: { forUpdate?: boolean } = {},
): Promise<ApiKey | null> {
  let query = keysWithTotals(db).where('k.org_id', '=', orgId).where('k.id', '=', keyId);
  if (options.forUpdate) query = query.forUpdate('k');
  const row = await query.executeTakeFirst();
  return row ? toApiKey(row, now) : null;
}

/** The newest key issued by rotating `keyId` (a key rotated with an overlap can be rotated again). */
export async function findSuccessor(
  db: Db,
  orgId: string,
  keyId: string,
  now: Date,
): Promise<ApiKey | null> {
  const row = await keysWithTotals(db)
    .where('k.org_id', '=', orgId)
    .where('k.rotated_from_id', '=', keyId)
    .orderBy('k.created_at', 'desc')
    .orderBy('k.id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row ? toApiKey(row, now) : null;
}

export type KeyPage = { items: ApiKey[]; hasMore: boolean };

/** Newest first, keyset-paged on (created_at, id) using api_keys_org_id_created_at_id_idx. */
export async function listKeys(
  db: Db,
  params: {
    orgId: string;
    status: KeyStatus | undefined;
    limit: number;
    after: { createdAt: Date; id: string } | undefined;
    now: Date;
  },
): Promise<KeyPage> {
  const { orgId, status, limit, after, now } = params;
  let query = keysWithTotals(db).where('k.org_id', '=', orgId);
  if (after) {
    query = query.where(sql<boolean>`(k.created_at, k.id) < (${after.createdAt}, ${after.id})`);
  }
  if (status === 'revoked') query = query.where('k.revoked_at', 'is not', null);
  if (status === 'expired') {
    query = query.where('k.revoked_at', 'is', null).where('k.expires_at', '<=', now);
  }
  if (status === 'active') {
    query = query
      .where('k.revoked_at', 'is', null)
      .where((eb) => eb.or([eb('k.expires_at', 'is', null), eb('k.expires_at', '>', now)]));
  }
  const rows = await query
    .orderBy('k.created_at', 'desc')
    .orderBy('k.id', 'desc')
    .limit(limit + 1)
    .execute();
  return { items: rows.slice(0, limit).map((r) => toApiKey(r, now)), hasMore: rows.length > limit };
}

export async function countActiveKeys(db: Db, orgId: string, now: Date): Promise<number> {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('org_id', '=', orgId)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function updateKey(
  db: Db,
  orgId: string,
  keyId: string,
  patch: {
    name?: string;
    scopes?: string[];
    expiresAt?: Date | null;
    allowedIps?: string[];
  },
): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({
      ...(patch.name !== undefined && { name: patch.name }),
      ...(patch.scopes !== undefined && { scopes: patch.scopes }),
      ...(patch.allowedIps !== undefined && { allowed_ips: patch.allowedIps }),
      // The audited expiry was the old expires_at: a new one can expire, and be audited, again.
      ...(patch.expiresAt !== undefined && {
        expires_at: patch.expiresAt,
        expiry_audited_at: null,
      }),
    })
    .where('org_id', '=', orgId)
    .where('id', '=', keyId)
    .execute();
}

export async function markRevoked(
  db: Db,
  orgId: string,
  keyId: string,
  at: Date,
  reason: string | null,
): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ revoked_at: at, revoked_reason: reason })
    .where('org_id', '=', orgId)
    .where('id', '=', keyId)
    .where('revoked_at', 'is', null)
    .execute();
}

export type ExpiredKeyRow = { id: string; orgId: string; prefix: string; expiresAt: Date };

/**
 * Marks up to `limit` keys whose expiry has passed and is not audited yet (active until then:
 * a revoked key is revoked, not expired), returning them for their audit entries. The outer
 * conditions are re-checked on the locked row, and SKIP LOCKED leaves rows another marker holds:
 * two runs never mark one key twice. Served by the partial index api_keys_expires_at_idx.
 */
export async function markExpiredKeys(
  db: Db,
  orgId: string,
  now: Date,
  limit: number,
): Promise<ExpiredKeyRow[]> {
  // A join with the locked CTE, not `id in (subquery)`: the planner cannot hash a subquery with
  // FOR UPDATE and LIMIT and re-ran it per row (2,500 expired keys: 3.8 s, now under 0.6 s).
  const { rows } = await sql<ExpiredKeyRow>`
    with due as (
      select org_id, id from api_keys
      where org_id = ${orgId}
        and revoked_at is null and expiry_audited_at is null and expires_at <= ${now}
      order by expires_at, id
      limit ${limit}
      for update skip locked
    )
    update api_keys k set expiry_audited_at = ${now}
    from due
    where k.org_id = ${orgId} and k.org_id = due.org_id and k.id = due.id
      and k.revoked_at is null and k.expiry_audited_at is null and k.expires_at <= ${now}
    returning k.id, k.org_id as "orgId", k.prefix, k.expires_at as "expiresAt"`.execute(db);
  return rows;
}

/**
 * The orgs with keys markExpiredKeys would mark: the marking runs per org (on Citus a locking
 * statement must stay on one org's shard).
 */
export async function orgsWithExpiredKeys(db: Db, now: Date): Promise<string[]> {
  const rows = await db
    .selectFrom('api_keys')
    .select('org_id')
    .distinct()
    .where('revoked_at', 'is', null)
    .where('expiry_audited_at', 'is', null)
    .where('expires_at', '<=', now)
    .execute();
  return rows.map((r) => r.org_id);
}

/** What markExpiredKeys would mark (a dry run). */
export async function countExpiredUnaudited(db: Db, now: Date): Promise<number> {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('revoked_at', 'is', null)
    .where('expiry_audited_at', 'is', null)
    .where('expires_at', '<=', now)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Delivered to every listening instance when the surrounding transaction commits. */
export async function notifyKeyChanged(db: Db, keyId: string): Promise<void> {
  await sql`select pg_notify(${KEY_CHANGED_CHANNEL}, ${keyId})`.execute(db);
}

/** Row lock on the org: serialises limit checks for concurrent key creation. */
export async function lockOrg(db: Db, orgId: string): Promise<boolean> {
  const row = await db
    .selectFrom('orgs')
    .select('id')
    .where('id', '=', orgId)
    .forUpdate()
    .executeTakeFirst();
  return row !== undefined;
}
