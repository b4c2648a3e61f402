/**
 * Migration 0014 on data written before it: key hashes move to api_key_hashes, webhook
 * deliveries, attempts and previous secrets gain their org from their parent, and every key
 * between an org's tables now goes through org_id (a rollup row of a key under another org, or
 * a second key with the same hash, is refused). Its down migration restores the old shape.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { describe, expect, inject, it } from 'vitest';
import { createMigrator, migrateToLatest } from './db.ts';
import { withScratchKysely } from '../testing/databases.ts';

type Ids = { org: string; other: string; key: string; next: string; endpoint: string };

async function legacyData(db: Kysely<unknown>, ids: Ids) {
  await sql`insert into orgs (id, name) values (${ids.org}, 'Legacy'), (${ids.other}, 'Other')`.execute(
    db,
  );
  await sql`insert into api_keys (id, org_id, name, environment, prefix, key_hash)
    values (${ids.key}, ${ids.org}, 'old', 'live', 'sk_live_old', '\\x0a0b')`.execute(db);
  await sql`insert into api_keys (id, org_id, name, environment, prefix, key_hash, rotated_from_id)
    values (${ids.next}, ${ids.org}, 'new', 'live', 'sk_live_new', '\\x0c0d', ${ids.key})`.execute(
    db,
  );
  await sql`insert into api_key_usage_totals (key_id, org_id, request_count)
    values (${ids.key}, ${ids.org}, 5)`.execute(db);
  await sql`insert into api_key_usage_hourly (key_id, hour, org_id, requests, latency_hist)
    values (${ids.key}, date_trunc('hour', now()), ${ids.org}, 5, '{}')`.execute(db);
  await sql`insert into webhook_endpoints (id, org_id, url, event_types, secret, enabled,
      created_at, updated_at)
    values (${ids.endpoint}, ${ids.org}, 'https://hooks.example.com/x', '{key.created}', '\\x01',
      true, now(), now())`.execute(db);
  const message = randomUUID();
  const delivery = randomUUID();
  await sql`insert into webhook_messages (id, org_id, type, occurred_at, payload)
    values (${message}, ${ids.org}, 'key.created', now(), '{}')`.execute(db);
  await sql`insert into webhook_deliveries (id, message_id, endpoint_id, status, created_at)
    values (${delivery}, ${message}, ${ids.endpoint}, 'failed', now())`.execute(db);
  await sql`insert into webhook_attempts (delivery_id, attempted_at, latency_ms, error)
    values (${delivery}, now(), 1, 'timeout')`.execute(db);
  await sql`insert into webhook_previous_secrets (endpoint_id, secret, expires_at)
    values (${ids.endpoint}, '\\x02', now() + interval '1 hour')`.execute(db);
}

/** The org_id of every row of the tables that gained it, and the key hashes. */
async function shape(db: Kysely<unknown>) {
  const orgs = await sql<{ t: string; org_id: string | null }>`
    select 'deliveries' as t, org_id from webhook_deliveries
    union all select 'attempts', org_id from webhook_attempts
    union all select 'previous', org_id from webhook_previous_secrets
    order by 1`.execute(db);
  const hashes = await sql<{ key_hash: Buffer; org_id: string; key_id: string }>`
    select key_hash, org_id, key_id from api_key_hashes order by key_hash`.execute(db);
  return { orgs: orgs.rows, hashes: hashes.rows };
}

const refused = (db: Kysely<unknown>, statement: ReturnType<typeof sql>) =>
  statement.execute(db).then(
    () => 'accepted',
    (error: unknown) => (error as { code?: string }).code,
  );

describe('migration 0014_org_keyed', () => {
  it('fills org_id and the hash table from existing rows, enforces keys through org_id, and undoes', async () => {
    await withScratchKysely(inject('serverUrl'), 'keytrail_m14', async (db) => {
      expect((await createMigrator(db).migrateTo('0013_spiking_keys')).error).toBeUndefined();
      const ids: Ids = {
        org: randomUUID(),
        other: randomUUID(),
        key: randomUUID(),
        next: randomUUID(),
        endpoint: randomUUID(),
      };
      await legacyData(db, ids);
      // A rollup row an earlier ingest let in under another org: named, nothing changed.
      await sql`insert into api_key_usage_daily (key_id, day, org_id, requests, latency_hist)
        values (${ids.key}, current_date, ${ids.other}, 1, '{}')`.execute(db);
      const failure = await migrateToLatest(db).then(String, (error: Error) => String(error.cause));
      expect(failure).toMatch(
        /1 rows of api_key_usage_daily name a key under an org it does not belong to/,
      );
      expect(await shape(db).catch((error: unknown) => String(error))).toMatch(
        /column "org_id" does not exist/,
      );
      await sql`delete from api_key_usage_daily where org_id = ${ids.other}`.execute(db);
      expect(await migrateToLatest(db)).toContain('0014_org_keyed');

      const after = await shape(db);
      expect(after.orgs).toEqual([
        { t: 'attempts', org_id: ids.org },
        { t: 'deliveries', org_id: ids.org },
        { t: 'previous', org_id: ids.org },
      ]);
      expect(after.hashes).toEqual([
        { key_hash: Buffer.from([10, 11]), org_id: ids.org, key_id: ids.key },
        { key_hash: Buffer.from([12, 13]), org_id: ids.org, key_id: ids.next },
      ]);
      // A rollup row of the key under another org, a key's second use of a hash, and a key
      // that was rotated into another deleted alone: each refused.
      const foreignRollup = sql`insert into api_key_usage_daily (key_id, day, org_id, requests,
          latency_hist) values (${ids.key}, current_date, ${ids.other}, 1, '{}')`;
      expect(await refused(db, foreignRollup)).toBe('23503');
      const sameHash = sql`insert into api_key_hashes (key_hash, org_id, key_id)
          values ('\\x0a0b', ${ids.other}, ${randomUUID()})`;
      expect(await refused(db, sameHash)).toBe('23505');
      const lineage = sql`delete from api_keys where id = ${ids.key}`;
      expect(await refused(db, lineage)).toBe('23503');
      // The org's deletion still takes everything with it.
      const rollupOrg = sql`insert into api_key_usage_daily (key_id, day, org_id, requests,
          latency_hist) values (${ids.key}, current_date, ${ids.org}, 1, '{}')`;
      expect(await refused(db, rollupOrg)).toBe('accepted');

      const down = await createMigrator(db).migrateTo('0013_spiking_keys');
      expect(down.error).toBeUndefined();
      const pk = await sql<{ def: string }>`select pg_get_constraintdef(oid) as def
          from pg_constraint where conname = 'api_keys_pkey'`.execute(db);
      expect(pk.rows).toEqual([{ def: 'PRIMARY KEY (id)' }]);
      expect(await migrateToLatest(db)).toContain('0014_org_keyed');
      expect(await shape(db)).toEqual(after);
      await sql`delete from orgs where id = ${ids.org}`.execute(db);
      const left = await sql<{ n: number }>`select
          (select count(*) from api_keys) + (select count(*) from api_key_usage_daily)
          + (select count(*) from api_key_hashes)
          + (select count(*) from webhook_attempts) as n`.execute(db);
      expect(Number(left.rows[0]?.n)).toBe(0);
    });
  });
});
