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
};

/** Every column but the token's hash. */
const COLUMNS = sql.raw(
  'id, org_id, key_id, query, created_at, expires_at, started_at, finished_at, state, rows_sent, bytes_sent, detail',
);

/** Links older than this are deleted when their org makes a new one. */
const KEEP_LINKS = '1 day';

/** A new link; the org's links older than a day go in the same statement. */
export async function insertExportLink(
  db: Db,
  link: {
    id: string;
    orgId: string;
    keyId: string;
    tokenHash: Buffer;
    query: unknown;
    createdAt: Date;
    expiresAt: Date;
  },
): Promise<void> {
  await sql`
    with old as (
      delete from export_links
      where org_id = ${link.orgId} and created_at < ${link.createdAt}::timestamptz - ${KEEP_LINKS}::interval
    )
    insert into export_links (id, org_id, key_id, token_hash, query, created_at, expires_at)
    values (${link.id}, ${link.orgId}, ${link.keyId}, ${link.tokenHash},
      ${JSON.stringify(link.query)}::jsonb, ${link.createdAt}, ${link.expiresAt})
  `.execute(db);
}

/**
 * Spends a link: only the first download of an unexpired link with the right token gets the row
 * (the row lock makes two downloads at once take turns; the second finds it used).
 */
export async function claimExportLink(
  db: Db,
  tokenHash: Buffer,
  now: Date,
): Promise<ExportLinkRow | undefined> {
  const { rows } = await sql<ExportLinkRow>`
    update export_links set state = 'streaming', started_at = ${now}
    where token_hash = ${tokenHash} and state = 'ready' and expires_at > ${now}
    returning ${COLUMNS}`.execute(db);
  return rows[0];
}

export async function exportProgress(
  db: Db,
  id: string,
  sent: { rows: number; bytes: number },
): Promise<void> {
  await db
    .updateTable('export_links')
    .set({ rows_sent: sent.rows, bytes_sent: sent.bytes })
    .where('id', '=', id)
    .where('state', '=', 'streaming')
    .execute();
}

export async function finishExportLink(
  db: Db,
  id: string,
  end: { state: 'done' | 'failed'; rows: number; bytes: number; detail: string | null; at: Date },
): Promise<void> {
  await db
    .updateTable('export_links')
    .set({
      state: end.state,
      rows_sent: end.rows,
      bytes_sent: end.bytes,
      detail: end.detail,
      finished_at: end.at,
    })
    .where('id', '=', id)
    .execute();
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
