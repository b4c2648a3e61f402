/**
 * Export links (docs/adr/0013-export-links.md): a key asks for an export and gets a link that
 * downloads it once, within a minute, with that key's power. The browser saves the file as it
 * arrives (a plain download) and the key never enters a URL. The link's row carries the
 * export's progress, so the page can show it whichever instance streams the file. Times are
 * the database's: every instance agrees on when a link expires.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '../platform/db.ts';
import { detachedFromRequest } from '../platform/db-scope.ts';
import { AppError } from '../platform/errors.ts';
import { newId } from '../platform/ids.ts';
import * as q from './export-links.queries.ts';

export { deleteOldExportLinks } from './export-links.queries.ts';

/** How often a streaming export writes its progress. */
export const PROGRESS_EVERY_MS = 1_000;
/** Links an org may hold unused at once (each works for a minute). */
export const MAX_READY_LINKS = 10;
const FINISH_ATTEMPTS = 3;

export type ExportState = 'ready' | 'streaming' | 'done' | 'failed' | 'expired';

export type ExportLink = {
  id: string;
  orgId: string;
  /** The key that made the link: the download has its power, checked again when it starts. */
  keyId: string;
  /** The export request as validated when the link was made. */
  query: unknown;
  state: ExportState;
  rows: number;
  bytes: number;
  createdAt: Date;
  expiresAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  detail: string | null;
};

export type Sent = { rows: number; bytes: number };

const hashOf = (token: string): Buffer => createHash('sha256').update(token).digest();

const STOPPED = 'the server streaming it stopped before its end';

function linkOf(row: q.ExportLinkRow): ExportLink {
  const state: ExportState = row.expired
    ? 'expired'
    : row.stale
      ? 'failed'
      : (row.state as ExportState);
  return {
    id: row.id,
    orgId: row.org_id,
    keyId: row.key_id,
    query: row.query,
    state,
    rows: Number(row.rows_sent),
    bytes: Number(row.bytes_sent),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    detail: row.stale ? STOPPED : row.detail,
  };
}

/**
 * `db` serves the requests (make, claim, read); `background` the progress an export writes
 * while it streams and when it ends, outside the request's scope: a client that left must
 * still have its export marked failed.
 */
export function createExportLinks(deps: { db: Database; background: Database }) {
  const { db, background } = deps;
  return {
    async create(
      caller: { keyId: string; orgId: string },
      query: unknown,
    ): Promise<{ link: ExportLink; token: string }> {
      const token = randomBytes(32).toString('base64url');
      const row = await q.insertExportLink(
        db,
        { id: newId(), ...caller, tokenHash: hashOf(token), query },
        MAX_READY_LINKS,
      );
      if (!row) {
        throw new AppError('rate_limited', {
          detail: `this org already has ${MAX_READY_LINKS} export links not yet used; each expires a minute after it was made`,
          retryAfterSeconds: 60,
        });
      }
      return { link: linkOf(row), token };
    },

    /** Spends the link of `token`: undefined when it is unknown, used or expired. */
    async claim(token: string): Promise<ExportLink | undefined> {
      const row = await q.claimExportLink(db, hashOf(token));
      return row && linkOf(row);
    },

    async get(orgId: string, id: string): Promise<ExportLink | undefined> {
      const row = await q.findExportLink(db, orgId, id);
      return row && linkOf(row);
    },

    /** Writes the progress; `keyActive` false: the link's key was revoked or expired since. */
    progress: (id: string, sent: Sent): Promise<{ keyActive: boolean }> =>
      detachedFromRequest(() => q.exportProgress(background, id, sent)),

    /** The export's end, tried a few times (a link left streaming reads as failed anyway). */
    finish: (id: string, sent: Sent, failure: string | null): Promise<void> =>
      detachedFromRequest(async () => {
        const state: 'done' | 'failed' = failure === null ? 'done' : 'failed';
        const end = { state, ...sent, detail: failure };
        for (let attempt = 1; ; attempt++) {
          try {
            await q.finishExportLink(background, id, end);
            return;
          } catch (error) {
            if (attempt >= FINISH_ATTEMPTS) throw error;
            await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
          }
        }
      }),
  };
}

export type ExportLinks = ReturnType<typeof createExportLinks>;
