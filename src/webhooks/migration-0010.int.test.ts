/**
 * Migration 0010 on data written before it: previous secrets still signing are copied to their
 * own table (the old columns stay for the previous version's processes), raw attempt errors become categories, and webhook URLs in audit details lose their
 * paths and queries (tokens), and nothing else in the audit trail changes.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { describe, expect, inject, it } from 'vitest';
import { createMigrator, migrateToLatest } from '../platform/db.ts';
import { withScratchKysely } from '../testing/databases.ts';

type Audit = { action: string; details: Record<string, unknown> };

async function legacyData(db: Kysely<unknown>, ids: { org: string; endpoint: string }) {
  await sql`insert into orgs (id, name) values (${ids.org}, 'Legacy')`.execute(db);
  await sql`insert into webhook_endpoints (id, org_id, url, event_types, secret, previous_secret,
      previous_secret_expires_at, enabled, created_at, updated_at)
    values (${ids.endpoint}, ${ids.org}, 'https://hooks.slack.com/services/T1/B2/tok',
      '{key.created}', '\\x01', '\\x02', now() + interval '1 hour', true, now(), now())`.execute(
    db,
  );
  const message = randomUUID();
  const delivery = randomUUID();
  await sql`insert into webhook_messages (id, org_id, type, occurred_at, payload)
    values (${message}, ${ids.org}, 'key.created', now(), '{}')`.execute(db);
  await sql`insert into webhook_deliveries (id, message_id, endpoint_id, status, created_at)
    values (${delivery}, ${message}, ${ids.endpoint}, 'failed', now())`.execute(db);
  const errors = [
    'HTTP 503',
    'redirect not followed (HTTP 302)',
    'timed out after 10000 ms',
    'DNS: ENOTFOUND',
    'private address not allowed',
    'connect ECONNREFUSED 10.20.0.7:8443',
    'read ECONNRESET',
    "Hostname/IP does not match certificate's altnames: Host: a. is not in the cert's altnames",
    'something new',
  ];
  for (const error of errors) {
    await sql`insert into webhook_attempts (delivery_id, attempted_at, latency_ms, error)
      values (${delivery}, now(), 1, ${error})`.execute(db);
  }
  const audit = (action: string, details: object) =>
    sql`insert into audit_events (id, org_id, actor_type, action, target_type, details)
      values (${randomUUID()}, ${ids.org}, 'system', ${action}, 'webhook',
        ${JSON.stringify(details)}::jsonb)`.execute(db);
  await audit('webhook.created', { url: 'https://hooks.slack.com/services/T1/B2/tok', x: 1 });
  await audit('webhook.updated', {
    changes: {
      url: { from: 'https://a.example.com/', to: 'https://b.example.com:8443/p/q?…' },
      enabled: { from: true, to: false },
    },
  });
  await audit('webhook.disabled', {
    url: 'https://10.20.0.7:8443/hook',
    failing_since: '2026-01-01T00:00:00.000Z',
    last_error: 'connect ECONNREFUSED 10.20.0.7:8443',
  });
  await audit('key.revoked', { url: 'https://example.com/untouched' });
}

describe('migration 0010_webhook_hardening', () => {
  it('moves previous secrets, categorises stored errors and redacts audited URLs', async () => {
    await withScratchKysely(inject('serverUrl'), 'keytrail_m10', async (db) => {
      const to0009 = await createMigrator(db).migrateTo('0009_webhooks');
      expect(to0009.error).toBeUndefined();
      const ids = { org: randomUUID(), endpoint: randomUUID() };
      await legacyData(db, ids);
      expect(await migrateToLatest(db)).toContain('0010_webhook_hardening');

      const previous = await sql<{ endpoint_id: string; secret: Buffer }>`
          select endpoint_id, secret from webhook_previous_secrets`.execute(db);
      expect(previous.rows).toEqual([{ endpoint_id: ids.endpoint, secret: Buffer.from([2]) }]);
      // Expand/contract: the previous version's processes, still running during a rolling
      // upgrade, read the old columns; they stay until a later migration.
      const legacy = await sql<{ previous_secret: Buffer }>`
          select e.previous_secret, e.previous_secret_expires_at from webhook_endpoints e`.execute(
        db,
      );
      expect(legacy.rows[0]?.previous_secret).toEqual(Buffer.from([2]));
      const errors = await sql<{ error: string }>`
          select error from webhook_attempts order by id`.execute(db);
      expect(errors.rows.map((r) => r.error)).toEqual([
        'http_error',
        'redirect',
        'timeout',
        'dns_failed',
        'address_not_allowed',
        'connection_refused',
        'connection_reset',
        'tls_error',
        'other',
      ]);
      const audit = await sql<Audit>`select action, details from audit_events
          order by action`.execute(db);
      expect(audit.rows).toEqual([
        { action: 'key.revoked', details: { url: 'https://example.com/untouched' } },
        {
          action: 'webhook.created',
          details: { url: 'https://hooks.slack.com/…', x: 1 },
        },
        {
          action: 'webhook.disabled',
          details: {
            url: 'https://10.20.0.7:8443/…',
            failing_since: '2026-01-01T00:00:00.000Z',
            last_error: 'connection_refused',
          },
        },
        {
          action: 'webhook.updated',
          details: {
            changes: {
              url: { from: 'https://a.example.com/', to: 'https://b.example.com:8443/…?…' },
              enabled: { from: true, to: false },
            },
          },
        },
      ]);
    });
  });
});
