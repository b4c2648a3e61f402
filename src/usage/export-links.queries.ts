import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';

type Db = Kysely<DB>;

export type ExportLinkRow = {
  id: string;
  org_id: string;
  key_id: string;
  query: unknown;
  created_at: Date;
  expires_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  state: string;
  rows_sent: string | number;
  bytes_sent: string | number;
  detail: string | null;
  /** Streaming, and no progress written for STALE_AFTER: its instance stopped. */
  stale: boolean;
  /** Ready and past its expiry. */
  expired: boolean;
};

/** How long a link works, on the database's clock (every instance agrees on it). */
const TTL = '60 seconds';
/** A streaming export writes its progress every second; this long without is a dead one. */
const STALE_AFTER = '15 seconds';
/** Links older than this are deleted. */
const KEEP_LINKS = '1 day';

/** Every column but the token's hash, and the states only the database clock can tell. */
const COLUMNS = sql.raw(`id, org_id, key_id, query, created_at, expires_at, started_at,
  finished_at, state, rows_sent, bytes_sent, detail,
  state = 'streaming' and coalesce(progress_at, started_at) < now() - interval '${STALE_AFTER}' as stale,
  state = 'ready' and expires_at <= now() as expired`);

/**
 * A new link, unless the org already has `maxReady` links not yet used nor expired (undefined
 * then); the org's links older than a day go in the same statement.
 */
export async function insertExportLink(
  db: Db,
  link: { id: string; orgId: string; keyId: string; tokenHash: Buffer; query: unknown },
  maxReady: number,
): Promise<ExportLinkRow | undefined> {
  const { rows } = await sql<ExportLinkRow>`
    with old as (
      delete from export_links
      where org_id = ${link.orgId} and created_at < now() - ${KEEP_LINKS}::interval
    )
    insert into export_links (id, org_id, key_id, token_hash, query, created_at, expires_at)
    select ${link.id}, ${link.orgId}, ${link.keyId}, ${link.tokenHash},
      ${JSON.stringify(link.query)}::jsonb, now(), now() + ${TTL}::interval
    where (select count(*) from export_links
      where org_id = ${link.orgId} and state = 'ready' and expires_at > now()) < ${maxReady}
    returning ${COLUMNS}`.execute(db);
  return rows[0];
}

/**
 * Spends a link: only the first download of an unexpired link with the right token gets the row
 * (the row lock makes two downloads at once take turns; the second finds it used).
 */
export async function claimExportLink(
  db: Db,
  tokenHash: Buffer,
): Promise<ExportLinkRow | undefined> {
  const { rows } = await sql<ExportLinkRow>`
    update export_links set state = 'streaming', started_at = now(), progress_at = now()
    where token_hash = ${tokenHash} and state = 'ready' and expires_at > now()
    returning ${COLUMNS}`.execute(db);
  return rows[0];
}

/**
 * Writes a streaming export's progress (never backwards: ticks may commit out of order) and
 * tells whether the key that made the link is still active: a key revoked or expired meanwhile
 * ends its export.
 */
export async function exportProgress(
  db: Db,
  id: string,
  sent: { rows: number; bytes: number },
): Promise<{ keyActive: boolean }> {
  // Two statements: on Citus the links stay on the coordinator and the keys on the workers.
  const { rows } = await sql<{ org_id: string; key_id: string }>`
    update export_links l
    set rows_sent = greatest(l.rows_sent, ${sent.rows}),
      bytes_sent = greatest(l.bytes_sent, ${sent.bytes}), progress_at = now()
    where l.id = ${id} and l.state = 'streaming'
    returning l.org_id, l.key_id`.execute(db);
  const link = rows[0];
  if (!link) return { keyActive: true };
  const key = await sql<{ key_active: boolean }>`
    select k.revoked_at is null and (k.expires_at is null or k.expires_at > now()) as key_active
    from api_keys k where k.org_id = ${link.org_id} and k.id = ${link.key_id}`.execute(db);
  return { keyActive: key.rows[0]?.key_active ?? true };
}

export async function finishExportLink(
  db: Db,
  id: string,
  end: { state: 'done' | 'failed'; rows: number; bytes: number; detail: string | null },
): Promise<void> {
  await sql`
    update export_links set state = ${end.state}, rows_sent = ${end.rows},
      bytes_sent = ${end.bytes}, detail = ${end.detail}, finished_at = now(), progress_at = now()
    where id = ${id}`.execute(db);
}

export async function findExportLink(
  db: Db,
  orgId: string,
  id: string,
): Promise<ExportLinkRow | undefined> {
  const { rows } = await sql<ExportLinkRow>`
    select ${COLUMNS} from export_links where org_id = ${orgId} and id = ${id}`.execute(db);
  return rows[0];
}

/** The daily maintenance: links older than a day, of every org. */
export async function deleteOldExportLinks(db: Db): Promise<number> {
  const result = await sql`
    delete from export_links where created_at < now() - ${KEEP_LINKS}::interval`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
