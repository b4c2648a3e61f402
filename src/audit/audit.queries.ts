import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { AuditEntry } from './audit.types.ts';

const auditRow = (entry: AuditEntry) => ({
  id: entry.id,
  org_id: entry.orgId,
  occurred_at: entry.occurredAt,
  actor_type: entry.actorType,
  actor_key_id: entry.actorKeyId,
  action: entry.action,
  target_type: entry.targetType,
  target_id: entry.targetId,
  details: JSON.stringify(entry.details),
});

export async function insertAuditEvent(db: Kysely<DB>, entry: AuditEntry): Promise<void> {
  await db.insertInto('audit_events').values(auditRow(entry)).execute();
}

/** Several entries in one statement (9 parameters each: callers keep batches in the thousands). */
export async function insertAuditEvents(db: Kysely<DB>, entries: AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db.insertInto('audit_events').values(entries.map(auditRow)).execute();
}

export type AuditRow = {
  id: string;
  occurred_at: Date;
  actor_type: string;
  actor_key_id: string | null;
  action: string;
  target_type: string;
  target_id: string | null;
  details: unknown;
};

/** Newest first, keyset-paged on (occurred_at, id) with audit_events_org_id_occurred_at_id_idx. */
export async function listAuditEvents(
  db: Kysely<DB>,
  p: {
    orgId: string;
    keyId?: string | undefined;
    action?: string | undefined;
    limit: number;
    before?: { occurredAt: Date; id: string } | undefined;
  },
): Promise<AuditRow[]> {
  let q = db
    .selectFrom('audit_events')
    .select([
      'id',
      'occurred_at',
      'actor_type',
      'actor_key_id',
      'action',
      'target_type',
      'target_id',
      'details',
    ])
    .where('org_id', '=', p.orgId);
  const keyId = p.keyId;
  if (keyId)
    q = q.where((eb) => eb.or([eb('target_id', '=', keyId), eb('actor_key_id', '=', keyId)]));
  if (p.action) q = q.where('action', '=', p.action);
  if (p.before)
    q = q.where(sql<boolean>`(occurred_at, id) < (${p.before.occurredAt}, ${p.before.id}::uuid)`);
  return q.orderBy('occurred_at', 'desc').orderBy('id', 'desc').limit(p.limit).execute();
}

/** One audit entry per org for an event that concerns them all (a partition dropped). */
export async function insertAuditEventForAllOrgs(
  db: Kysely<DB>,
  e: { occurredAt: Date; action: string; targetType: string; details: Record<string, unknown> },
): Promise<void> {
  await sql`insert into audit_events (id, org_id, occurred_at, actor_type, action, target_type, details)
    select gen_random_uuid(), id, ${e.occurredAt}, 'system', ${e.action}, ${e.targetType}, ${JSON.stringify(e.details)}::jsonb
    from orgs`.execute(db);
}
