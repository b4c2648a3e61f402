/**
 * The key watch (every 5 minutes, one run at a time across workers): expired keys are audited
 * (`key.expired`), keys nearing expiry get their 7-day and 1-day `key.expiring` notices, and
 * keys whose spike flag turned on get `key.spike`. Each finding marks its keys and writes the
 * outbox in one transaction: a notice is sent once, however the runs overlap or fail.
 */
import type { Database } from '../platform/db.ts';
import { auditExpiredKeys } from '../keys/keys.expiry.ts';
import {
  markExpiringNotices,
  markQuotaLow,
  markSpikes,
  orgsToJudgeForSpikes,
  orgsWithExpiringKeys,
  type Notice,
} from './hygiene.queries.ts';
import { writeOutbox } from './outbox.queries.ts';
import type { OutboxEvent, WebhookEventType } from './webhooks.types.ts';

export const KEY_WATCH_QUEUE = 'keys.watch';
export const KEY_WATCH_CRON = '*/5 * * * *';
const BATCH = 500;

/** Outbox events of notices keytrail itself found (actor system). */
export function noticeEvents(type: WebhookEventType, notices: Notice[], at: Date): OutboxEvent[] {
  return notices.map((n) => ({
    orgId: n.org_id,
    type,
    at,
    keyId: n.id,
    actor: { type: 'system' },
    details: n.details,
  }));
}

async function publish(trx: Database, events: OutboxEvent[]): Promise<void> {
  await writeOutbox(async (q) => (await q.execute(trx)).rows, events);
}

/**
 * `key.quota_low` for quotas an instance just reported its holdings of (called by the limits'
 * sync): marked and written in one transaction, once per period like the ingest's own check.
 */
export async function noticeLowQuotas(db: Database, subjects: readonly string[]): Promise<number> {
  if (subjects.length === 0) return 0;
  return db.transaction().execute(async (trx) => {
    const { rows } = await markQuotaLow(subjects).execute(trx);
    await publish(trx, noticeEvents('key.quota_low', rows, new Date()));
    return rows.length;
  });
}

export type WatchReport = { expired: number; expiring: number; spikes: number };

export async function runKeyWatch(
  db: Database,
  o: { now: Date; spike: { factor: number; minRequests: number } },
): Promise<WatchReport> {
  const expired = await auditExpiredKeys(db, { now: o.now, dryRun: false });
  // Each finding runs per org: on Citus a statement that locks keys stays on one org's shard.
  let expiring = 0;
  for (const { org_id } of (await orgsWithExpiringKeys(o.now).execute(db)).rows) {
    for (;;) {
      const found = await db.transaction().execute(async (trx) => {
        const marked = (await markExpiringNotices(org_id, o.now, BATCH).execute(trx)).rows;
        const notices = marked.map((k) => ({
          id: k.id,
          org_id: k.org_id,
          details: { expires_at: k.expires_at.toISOString(), notice: `${k.stage}d` },
        }));
        await publish(trx, noticeEvents('key.expiring', notices, o.now));
        return notices.length;
      });
      expiring += found;
      if (found < BATCH) break;
    }
  }
  let spikes = 0;
  for (const { org_id } of (await orgsToJudgeForSpikes(o.now).execute(db)).rows) {
    spikes += await db.transaction().execute(async (trx) => {
      const notices = (await markSpikes(org_id, o.now, o.spike).execute(trx)).rows;
      await publish(trx, noticeEvents('key.spike', notices, o.now));
      return notices.length;
    });
  }
  return { expired, expiring, spikes };
}
