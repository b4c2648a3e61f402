import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { AuditEntry } from './audit.types.ts';

export async function insertAuditEvent(db: Kysely<DB>, entry: AuditEntry): Promise<void> {
  await db
    .insertInto('audit_events')
    .values({
      id: entry.id,
      org_id: entry.orgId,
      occurred_at: entry.occurredAt,
      actor_type: entry.actorType,
      actor_key_id: entry.actorKeyId,
      action: entry.action,
      target_type: entry.targetType,
      target_id: entry.targetId,
      details: JSON.stringify(entry.details),
    })
    .execute();
}
