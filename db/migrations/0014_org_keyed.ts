import { sql, type Kysely } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// One schema shape for one PostgreSQL and for Citus (SPEC §12, docs/adr/0015-citus.md).
// - Every primary and unique key of an org's tables begins with org_id, and every foreign key
//   between them goes through org_id: on Citus, where these tables are spread over nodes by
//   org_id, a key can only be enforced within one org's shard.
// - Tables that lacked org_id (webhook deliveries, attempts, previous secrets) gain it, filled
//   from their parent.
// - A key's hash is unique across orgs, which a shard cannot check: the hash moves to
//   api_key_hashes (key_hash → org, key), read by authentication before the org is known.
// - With the citus extension, the org's tables are then distributed by org_id and co-located,
//   orgs and api_key_hashes become reference tables (a copy on every node), and the rest stays
//   on the coordinator: pg-boss, the migrations, the limiters' shared state (rate claims,
//   quotas and their leases, instances), export links (found by token) and the prune watermark.
export const DISTRIBUTED = [
  'api_keys',
  'api_key_usage_events',
  'api_key_usage_totals',
  'api_key_usage_hourly',
  'api_key_usage_daily',
  'api_key_usage_routes_daily',
  'audit_events',
  'dormant_key_policies',
  'org_rate_limit_defaults',
  'webhook_endpoints',
  'webhook_messages',
  'webhook_deliveries',
  'webhook_attempts',
  'webhook_previous_secrets',
] as const;

export const REFERENCE = ['orgs', 'api_key_hashes'] as const;

const ROLLUPS = [
  ['api_key_usage_totals', 'key_id'],
  ['api_key_usage_hourly', 'key_id, hour'],
  ['api_key_usage_daily', 'key_id, day'],
  ['api_key_usage_routes_daily', 'key_id, day, method, route'],
] as const;

// Foreign keys between an org's tables, through org_id: [table, name, columns, target]; each
// deletes with its parent but the one within api_keys.
// api_keys_rotated_from_fkey was `on delete set null`, which Citus refuses with the distribution
// column in the key. keytrail never deletes a key (only its org, with all of them); by hand, a
// key that was rotated into another can no longer be deleted alone, which keeps the trail.
const FOREIGN_KEYS = [
  ['api_keys', 'api_keys_rotated_from_fkey', 'rotated_from_id', 'api_keys'],
  ...ROLLUPS.map(([table]) => [table, `${table}_key_fkey`, 'key_id', 'api_keys'] as const),
  ['webhook_deliveries', 'webhook_deliveries_endpoint_fkey', 'endpoint_id', 'webhook_endpoints'],
  ['webhook_deliveries', 'webhook_deliveries_message_fkey', 'message_id', 'webhook_messages'],
  ['webhook_attempts', 'webhook_attempts_delivery_fkey', 'delivery_id', 'webhook_deliveries'],
  [
    'webhook_previous_secrets',
    'webhook_previous_secrets_endpoint_fkey',
    'endpoint_id',
    'webhook_endpoints',
  ],
] as const;

async function run(db: Kysely<unknown>, text: string): Promise<void> {
  await sql.raw(text).execute(db);
}

/** `table` gains org_id from its parent row (`column` → `parent`.id), and (org_id, id) as key. */
async function orgFromParent(
  db: Kysely<unknown>,
  table: string,
  column: string,
  parent: string,
): Promise<void> {
  await run(db, `alter table ${table} add column org_id uuid`);
  await run(
    db,
    `update ${table} c set org_id = p.org_id from ${parent} p where p.id = c.${column}`,
  );
  await run(
    db,
    `alter table ${table} alter column org_id set not null,
      drop constraint ${table}_pkey, add primary key (org_id, id)`,
  );
}

/**
 * Rows an earlier version let in that the new keys refuse: a rollup row of a key under an org it
 * does not belong to (its ingest took the org from the event). Named before anything is changed,
 * so the operator can delete them and migrate again.
 */
async function refuseForeignRollups(db: Kysely<unknown>): Promise<void> {
  for (const [table] of ROLLUPS) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)} r
      where not exists (select 1 from api_keys k where k.id = r.key_id and k.org_id = r.org_id)`.execute(
      db,
    );
    const n = rows[0]?.n ?? 0;
    if (n > 0) {
      throw new Error(
        `0014_org_keyed: ${n} rows of ${table} name a key under an org it does not belong to; ` +
          `delete them and migrate again`,
      );
    }
  }
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await run(db, `set local lock_timeout = '5s'`);
  await refuseForeignRollups(db);
  await run(
    db,
    `create table api_key_hashes (
      key_hash bytea primary key,
      org_id uuid not null references orgs (id) on delete cascade,
      -- No foreign key to api_keys: on Citus a reference table cannot reference a distributed
      -- one. A hash whose key is gone authenticates nothing (the key is read next).
      key_id uuid not null
    )`,
  );
  await run(
    db,
    `insert into api_key_hashes (key_hash, org_id, key_id) select key_hash, org_id, id from api_keys`,
  );

  // Foreign keys into api_keys (id) go first, then its primary key becomes (org_id, id).
  for (const [table] of ROLLUPS)
    await run(db, `alter table ${table} drop constraint ${table}_key_id_fkey`);
  await run(db, `alter table api_keys drop constraint api_keys_rotated_from_id_fkey`);
  await run(db, `drop index api_keys_key_hash_idx`);
  await run(db, `alter table api_keys drop constraint api_keys_pkey, add primary key (org_id, id)`);
  await run(db, `drop index api_keys_rotated_from_id_idx`);
  await run(
    db,
    `create index api_keys_rotated_from_idx on api_keys (org_id, rotated_from_id)
      where rotated_from_id is not null`,
  );
  // Was `on delete set null`, which Citus refuses with the distribution column in the key.
  // keytrail never deletes a key (only its org, with all of them); by hand, a key that was
  // rotated into another can no longer be deleted alone, which keeps the rotation's trail.
  for (const [table, rest] of ROLLUPS) {
    await run(
      db,
      `alter table ${table} drop constraint ${table}_pkey, add primary key (org_id, ${rest})`,
    );
  }
  await run(db, `drop index api_key_usage_totals_org_id_idx`);

  await run(
    db,
    `alter table audit_events drop constraint audit_events_pkey, add primary key (org_id, id)`,
  );

  // Webhooks: endpoints and messages keyed by (org_id, id); deliveries, attempts and previous
  // secrets gain org_id from their parent.
  await run(
    db,
    `alter table webhook_deliveries drop constraint webhook_deliveries_endpoint_id_fkey,
    drop constraint webhook_deliveries_message_id_fkey,
    drop constraint webhook_deliveries_endpoint_id_message_id_key`,
  );
  await run(db, `alter table webhook_attempts drop constraint webhook_attempts_delivery_id_fkey`);
  await run(
    db,
    `alter table webhook_previous_secrets drop constraint webhook_previous_secrets_endpoint_id_fkey`,
  );
  for (const table of ['webhook_endpoints', 'webhook_messages']) {
    await run(
      db,
      `alter table ${table} drop constraint ${table}_pkey, add primary key (org_id, id)`,
    );
  }
  // Children gain their org from their parent, parents first.
  await orgFromParent(db, 'webhook_deliveries', 'endpoint_id', 'webhook_endpoints');
  await orgFromParent(db, 'webhook_attempts', 'delivery_id', 'webhook_deliveries');
  await orgFromParent(db, 'webhook_previous_secrets', 'endpoint_id', 'webhook_endpoints');
  await run(db, `alter table webhook_deliveries add unique (org_id, endpoint_id, message_id)`);
  const indexes = [
    [
      'webhook_deliveries_endpoint_idx',
      'webhook_deliveries (org_id, endpoint_id, created_at desc, id desc)',
    ],
    ['webhook_deliveries_message_idx', 'webhook_deliveries (org_id, message_id)'],
    // The relay lists the orgs with queued deliveries, then claims each org's oldest.
    [
      'webhook_deliveries_queued_idx',
      `webhook_deliveries (org_id, created_at) where status = 'queued'`,
    ],
    ['webhook_attempts_delivery_idx', 'webhook_attempts (org_id, delivery_id, id)'],
  ] as const;
  for (const [name, on] of indexes) {
    await run(db, `drop index ${name}`);
    await run(db, `create index ${name} on ${on}`);
  }
  await run(db, `drop index webhook_previous_secrets_endpoint_id_expires_at_idx`);
  await run(
    db,
    `create index webhook_previous_secrets_endpoint_idx
      on webhook_previous_secrets (org_id, endpoint_id, expires_at)`,
  );
  // Delivery jobs queued before this migration learn their org: each then finds its delivery
  // by (org_id, id), not by a scan of every org's deliveries.
  await run(
    db,
    `do $$ begin
      if to_regclass('pgboss.job') is not null then
        update pgboss.job j set data = j.data || jsonb_build_object('org_id', d.org_id)
        from webhook_deliveries d
        where j.name in ('webhooks.deliver', 'webhooks.deliver.dead') and not (j.data ? 'org_id')
          and d.id = (j.data->>'delivery_id')::uuid;
      end if;
    end $$`,
  );

  // On Citus the tables are distributed before the keys between them exist: a table that is
  // not yet distributed may not reference one that is.
  await distributeOnCitus(db);
  for (const [table, name, columns, target] of FOREIGN_KEYS) {
    await run(
      db,
      `alter table ${table} add constraint ${name} foreign key (org_id, ${columns})
        references ${target} (org_id, id)${table === target ? '' : ' on delete cascade'}`,
    );
  }
}

/** On a database with the citus extension: reference and distributed tables (see above). */
async function distributeOnCitus(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql<{ citus: boolean }>`
    select exists (select 1 from pg_extension where extname = 'citus') as citus`.execute(db);
  if (!rows[0]?.citus) return;
  // DDL on reference tables and distribution in one transaction: one connection per node.
  await run(db, `set local citus.multi_shard_modify_mode to 'sequential'`);
  // The coordinator's own tables stay plain PostgreSQL tables, which Citus leaves alone: with a
  // foreign key to orgs (a reference table) Citus would manage them too, and then refuse some of
  // keytrail's statements on them. keytrail never deletes an org; by hand, delete an org's
  // quotas and export links with it.
  await run(db, `alter table key_quotas drop constraint key_quotas_org_id_fkey`);
  await run(db, `alter table export_links drop constraint export_links_org_id_fkey`);
  for (const table of REFERENCE) await run(db, `select create_reference_table('${table}')`);
  const [first, ...rest] = DISTRIBUTED;
  await run(db, `select create_distributed_table('${first}', 'org_id')`);
  for (const table of rest) {
    await run(
      db,
      `select create_distributed_table('${table}', 'org_id', colocate_with => '${first}')`,
    );
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql<{ citus: boolean }>`
    select exists (select 1 from pg_extension where extname = 'citus') as citus`.execute(db);
  if (rows[0]?.citus) throw new Error('0014_org_keyed cannot be undone on Citus');
  for (const [table, name] of FOREIGN_KEYS) {
    await run(db, `alter table ${table} drop constraint ${name}`);
  }
  // Primary keys by id again, then the old indexes and foreign keys.
  for (const table of ['api_keys', 'audit_events', 'webhook_endpoints', 'webhook_messages']) {
    await run(db, `alter table ${table} drop constraint ${table}_pkey, add primary key (id)`);
  }
  for (const [table, rest] of ROLLUPS) {
    await run(db, `alter table ${table} drop constraint ${table}_pkey, add primary key (${rest})`);
  }
  await run(
    db,
    `drop index webhook_previous_secrets_endpoint_idx, webhook_attempts_delivery_idx,
      webhook_deliveries_endpoint_idx, webhook_deliveries_message_idx,
      webhook_deliveries_queued_idx, api_keys_rotated_from_idx`,
  );
  for (const table of ['webhook_deliveries', 'webhook_attempts', 'webhook_previous_secrets']) {
    await run(db, `alter table ${table} drop column org_id, add primary key (id)`);
  }
  await run(db, `alter table webhook_deliveries add unique (endpoint_id, message_id)`);
  const oldForeignKeys = [
    ['webhook_previous_secrets', 'endpoint_id', 'webhook_endpoints', 'cascade'],
    ['webhook_attempts', 'delivery_id', 'webhook_deliveries', 'cascade'],
    ['webhook_deliveries', 'endpoint_id', 'webhook_endpoints', 'cascade'],
    ['webhook_deliveries', 'message_id', 'webhook_messages', 'cascade'],
    ['api_keys', 'rotated_from_id', 'api_keys', 'set null'],
    ...ROLLUPS.map(([table]) => [table, 'key_id', 'api_keys', 'cascade'] as const),
  ] as const;
  for (const [table, column, target, action] of oldForeignKeys) {
    await run(
      db,
      `alter table ${table} add constraint ${table}_${column}_fkey foreign key (${column})
        references ${target} (id) on delete ${action}`,
    );
  }
  await run(
    db,
    `create index webhook_previous_secrets_endpoint_id_expires_at_idx
      on webhook_previous_secrets (endpoint_id, expires_at)`,
  );
  await run(db, `create index webhook_attempts_delivery_idx on webhook_attempts (delivery_id, id)`);
  await run(
    db,
    `create index webhook_deliveries_endpoint_idx
      on webhook_deliveries (endpoint_id, created_at desc, id desc)`,
  );
  await run(db, `create index webhook_deliveries_message_idx on webhook_deliveries (message_id)`);
  await run(
    db,
    `create index webhook_deliveries_queued_idx on webhook_deliveries (created_at)
      where status = 'queued'`,
  );
  await run(db, `create index api_key_usage_totals_org_id_idx on api_key_usage_totals (org_id)`);
  await run(db, `create index api_keys_rotated_from_id_idx on api_keys (rotated_from_id)`);
  await run(db, `create unique index api_keys_key_hash_idx on api_keys (key_hash)`);
  await run(db, `drop table api_key_hashes`);
}
