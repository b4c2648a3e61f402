/**
 * Export links (docs/adr/0013-export-links.md): a key asks for an export and gets a link that
 * downloads it once, within EXPORT_LINK_TTL_MS, with that key's power. The browser saves the
 * file as it arrives (a plain download) and the key never enters a URL. The link's row carries
 * the export's progress, so the page can show it whichever instance streams the file.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import { detachedFromRequest } from '../platform/db-scope.ts';
import { newId } from '../platform/ids.ts';
import * as q from './export-links.queries.ts';

/** A link is for the download the page starts at once: a minute is plenty, and bounds a leak. */
export const EXPORT_LINK_TTL_MS = 60_000;
/** How often a streaming export writes its progress. */
export const PROGRESS_EVERY_MS = 1_000;

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

function linkOf(row: q.ExportLinkRow, now: Date): ExportLink {
  const expired = row.state === 'ready' && row.expires_at <= now;
  return {
    id: row.id,
    orgId: row.org_id,
    keyId: row.key_id,
    query: row.query,
    state: expired ? 'expired' : (row.state as ExportState),
    rows: Number(row.rows_sent),
    bytes: Number(row.bytes_sent),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    detail: row.detail,
  };
}

/**
 * `db` serves the requests (make, claim, read); `background` the progress an export writes
 * while it streams and when it ends, outside the request's scope: a client that left must
 * still have its export marked failed.
 */
export function createExportLinks(deps: { db: Database; background: Database; clock: Clock }) {
  const { db, background, clock } = deps;
  return {
    async create(
      caller: { keyId: string; orgId: string },
      query: unknown,
    ): Promise<{ link: ExportLink; token: string }> {
      const token = randomBytes(32).toString('base64url');
      const now = clock.now();
      const row = {
        id: newId(),
        orgId: caller.orgId,
        keyId: caller.keyId,
        tokenHash: hashOf(token),
        query,
        createdAt: now,
        expiresAt: new Date(now.getTime() + EXPORT_LINK_TTL_MS),
      };
      await q.insertExportLink(db, row);
      const link: ExportLink = {
        ...row,
        state: 'ready',
        rows: 0,
        bytes: 0,
        startedAt: null,
        finishedAt: null,
        detail: null,
      };
      return { link, token };
    },

    /** Spends the link of `token`: undefined when it is unknown, used or expired. */
    async claim(token: string): Promise<ExportLink | undefined> {
      const now = clock.now();
      const row = await q.claimExportLink(db, hashOf(token), now);
      return row && linkOf(row, now);
    },

    async get(orgId: string, id: string): Promise<ExportLink | undefined> {
      const row = await q.findExportLink(db, orgId, id);
      return row && linkOf(row, clock.now());
    },

    progress: (id: string, sent: Sent): Promise<void> =>
      detachedFromRequest(() => q.exportProgress(background, id, sent)),

    finish: (id: string, sent: Sent, failure: string | null): Promise<void> =>
      detachedFromRequest(() =>
        q.finishExportLink(background, id, {
          state: failure === null ? 'done' : 'failed',
          ...sent,
          detail: failure,
          at: clock.now(),
        }),
      ),
  };
}

export type ExportLinks = ReturnType<typeof createExportLinks>;
