import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import { newId } from '../platform/ids.ts';
import {
  insertAuditEvent,
  insertAuditEventForAllOrgs,
  insertAuditEvents,
} from './audit.queries.ts';
import type { AuditAction, AuditEntry } from './audit.types.ts';
import { writeOutbox } from '../webhooks/outbox.queries.ts';
import {
  AUDITED_EVENT_TYPES,
  type OutboxEvent,
  type WebhookEventType,
} from '../webhooks/webhooks.types.ts';

export type AuditActor =
  { type: 'key'; keyId: string } | { type: 'operator' } | { type: 'system' } | { type: 'policy' };

export type NewAuditEntry = {
  orgId: string;
  at: Date;
  actor: AuditActor;
  action: AuditAction;
  target: { type: 'api_key' | 'partition' | 'policy' | 'webhook'; id: string | null };
  details: Record<string, unknown>;
};

function toEntry(entry: NewAuditEntry): AuditEntry {
  return {
    id: newId(),
    orgId: entry.orgId,
    occurredAt: entry.at,
    actorType: entry.actor.type,
    actorKeyId: entry.actor.type === 'key' ? entry.actor.keyId : null,
    action: entry.action,
    targetType: entry.target.type,
    targetId: entry.target.id,
    details: entry.details,
  };
}

/**
 * Appends an audit entry. Callers pass their open transaction so the entry commits or rolls
 * back with the change it describes.
 */
export async function recordAudit(trx: Kysely<DB>, entry: NewAuditEntry): Promise<void> {
  await insertAuditEvent(trx, toEntry(entry));
  await publish(trx, [entry]);
}

/** Appends several entries in one statement, like recordAudit (inside the caller's transaction). */
export async function recordAudits(trx: Kysely<DB>, entries: NewAuditEntry[]): Promise<void> {
  await insertAuditEvents(trx, entries.map(toEntry));
  await publish(trx, entries);
}

/**
 * A key change that is audited is also a webhook event: it enters the outbox in the same
 * transaction as its audit entry, so the two never disagree.
 */
async function publish(trx: Kysely<DB>, entries: readonly NewAuditEntry[]): Promise<void> {
  const events = entries.flatMap((e): OutboxEvent[] =>
    AUDITED_EVENT_TYPES.has(e.action) && e.target.type === 'api_key' && e.target.id
      ? [
          {
            orgId: e.orgId,
            type: e.action as WebhookEventType,
            at: e.at,
            keyId: e.target.id,
            actor: e.actor.type === 'key' ? { type: 'key', key_id: e.actor.keyId } : e.actor,
            details: e.details,
          },
        ]
      : [],
  );
  await writeOutbox(async (q) => (await q.execute(trx)).rows, events);
}

export { listAuditEvents } from './audit.queries.ts';

export async function recordAuditForAllOrgs(
  db: Kysely<DB>,
  entry: {
    at: Date;
    action: AuditAction;
    target: { type: 'partition'; id: null };
    details: Record<string, unknown>;
  },
): Promise<void> {
  await insertAuditEventForAllOrgs(db, {
    occurredAt: entry.at,
    action: entry.action,
    targetType: entry.target.type,
    details: entry.details,
  });
}
