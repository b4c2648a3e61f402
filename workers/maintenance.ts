import type { Keytrail } from '../src/keytrail.ts';
import { deleteOldExportLinks } from '../src/usage/export-links.service.ts';
import { ensurePartitionsAhead } from '../src/usage/usage.partitions.ts';
import { compressPartitions } from '../src/usage/usage.compress.ts';
import { columnarAvailable } from '../src/usage/compress.queries.ts';
import { prune } from '../src/usage/usage.prune.ts';
import {
  pruneExpiredSecrets,
  pruneWebhookMessages,
  WEBHOOK_RETENTION_DAYS,
} from '../src/webhooks/webhooks.retention.ts';

/**
 * Daily upkeep: partitions ahead exist before events arrive; data past retention goes; keys
 * that expired since the last run get their `key.expired` audit entry (all in prune); on Citus,
 * closed months go to columnar storage; then each org's dormant-key policy notifies about or
 * revokes its dormant keys.
 */
/**
 * Compress starts no month past this (the daily job's pg-boss deadline is an hour; a first run
 * over years of history continues day after day, newest months first).
 */
const COMPRESS_SECONDS_PER_DAY = 20 * 60;

/** `daily`: the schedule's run (compress and policies too), not the one at start-up. */
export async function runMaintenance(kt: Keytrail, o: { daily: boolean }): Promise<void> {
  const now = kt.clock.now();
  await ensurePartitionsAhead(kt.backgroundDatabase.db, now, 2);
  const report = await prune(kt.backgroundDatabase.db, {
    now,
    retentionDays: kt.config.retentionDays,
    hourlyRetentionDays: kt.config.hourlyRetentionDays,
    rollupRetentionDays: kt.config.rollupRetentionDays,
    dryRun: false,
  });
  kt.logger.info(
    {
      dropped: report.partitions.map((p) => p.name),
      hourly_deleted: report.hourlyRowsDeleted,
      daily_deleted: report.dailyRowsDeleted,
      expired_keys_marked: report.expiredKeysMarked,
      prune_skipped: report.skipped,
    },
    'maintenance: partitions ensured, retention applied',
  );
  // On Citus: closed months to columnar storage (after prune: a month about to go is not
  // copied). Daily only: a copy of a big month must not hold back ingest's start.
  if (o.daily && (await columnarAvailable(kt.backgroundDatabase.db))) {
    // A failed compress is logged; the rest of the day's upkeep still runs.
    await compressPartitions(kt.backgroundDatabase.db, {
      now,
      dryRun: false,
      maxSeconds: COMPRESS_SECONDS_PER_DAY,
    }).then(
      (compressed) => {
        if (compressed.partitions.length + compressed.failed.length === 0 && !compressed.skipped)
          return;
        kt.logger[compressed.failed.length > 0 ? 'warn' : 'info'](
          {
            compressed: compressed.partitions.map((p) => p.name),
            failed: compressed.failed,
            skipped: compressed.skipped,
          },
          'maintenance: closed months compressed to columnar storage',
        );
      },
      (error: unknown) =>
        kt.logger.error({ err: String(error) }, 'maintenance: compressing closed months failed'),
    );
  }
  const webhookMessages = await pruneWebhookMessages(
    kt.backgroundDatabase.db,
    new Date(now.getTime() - WEBHOOK_RETENTION_DAYS * 86_400_000),
  );
  if (webhookMessages > 0) {
    kt.logger.info({ deleted: webhookMessages }, 'maintenance: old webhook messages deleted');
  }
  await pruneExpiredSecrets(kt.backgroundDatabase.db, now);
  const links = await deleteOldExportLinks(kt.backgroundDatabase.db);
  if (links > 0) kt.logger.info({ deleted: links }, 'maintenance: old export links deleted');
  // Only from the daily schedule, never at start-up (ingest must not wait for it, and a policy
  // acts once a day). After the expiry audit: an expired key is never revoked as dormant.
  if (!o.daily) return;
  const dormant = await kt.backgroundPolicies.runAll();
  kt.logger.info(
    { orgs: dormant.orgs, keys_acted_on: dormant.acted, orgs_skipped: dormant.skipped },
    'maintenance: dormant-key policies applied',
  );
}
