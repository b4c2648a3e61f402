/**
 * Export links (SPEC §7, docs/adr/0013-export-links.md). POST …/exports makes a link that
 * downloads one export once, within a minute, with the power of the key that asked; GET
 * …/exports/:exportId tells how far it got. GET /api/exports/:token is the download itself: it
 * takes no credentials (a browser opens it as a plain download and saves the file as it
 * arrives), and is refused unless the key that made the link is still valid, holds
 * `events:read`, and allows the downloader's address.
 */
import { finished } from 'node:stream/promises';
import { Router, type Response } from 'express';
import type { Keytrail } from '../../keytrail.ts';
import { missingScopes } from '../../keys/keys.types.ts';
import { compileAllowedIps } from '../../limits/ip-allow.ts';
import { AppError, isAppError } from '../../platform/errors.ts';
import { classify } from '../middleware/errors.ts';
import { PROGRESS_EVERY_MS, type ExportLink, type Sent } from '../../usage/export-links.service.ts';
import { CreateExportBody, ExportParams, ExportTokenParams } from '../export.schemas.ts';
import { parseInput } from '../validate.ts';
import { filterOf, guardExport, streamEvents, type Meter } from './events.routes.ts';

const SCOPE = 'events:read';

const exportJson = (link: ExportLink) => ({
  id: link.id,
  state: link.state,
  rows: link.rows,
  bytes: link.bytes,
  created_at: link.createdAt.toISOString(),
  expires_at: link.expiresAt.toISOString(),
  started_at: link.startedAt?.toISOString() ?? null,
  finished_at: link.finishedAt?.toISOString() ?? null,
  detail: link.detail,
});

/** The link has the power of its key, as that key is now. */
async function assertHolder(kt: Keytrail, link: ExportLink, ip: string | undefined) {
  // Only "not found" means the key is gone; any other failure (a pool wait, an outage) is
  // answered for what it is.
  const key = await kt.keys.get(link.orgId, link.keyId).catch((error: unknown) => {
    if (isAppError(error) && error.code === 'not_found') return null;
    throw error;
  });
  if (key?.status !== 'active') {
    throw new AppError('unauthenticated', {
      detail: 'the key that made this export link is no longer valid',
    });
  }
  if (missingScopes(key.scopes, [SCOPE]).length > 0) {
    throw new AppError('insufficient_scope', {
      detail: `the key that made this export link no longer holds ${SCOPE}`,
    });
  }
  if (key.allowedIps.length > 0 && !compileAllowedIps(key.allowedIps)(ip)) {
    throw new AppError('ip_not_allowed', {
      detail: 'the key that made this export link may not be used from this address',
    });
  }
}

/** Why an export ended before its end, in the link's `detail`: its problem's code and detail. */
function failureOf(error: unknown): string {
  const problem = classify(error);
  return problem.detail ? `${problem.code}: ${problem.detail}` : problem.code;
}

const REVOKED = 'the key that made this export link was revoked or expired while it streamed';

/** Streams the link's export, writing its progress every second and its end. */
async function download(kt: Keytrail, link: ExportLink, ip: string | undefined, res: Response) {
  const meter: Meter = { lines: 0, bytes: 0 };
  let header = 0;
  const sent = (): Sent => ({ rows: Math.max(0, meter.lines - header), bytes: meter.bytes });
  const log = (error: unknown) =>
    kt.logger.warn({ err: String(error), export_id: link.id }, 'export progress not written');
  let failure: string | null = null;
  let revoked = false;
  const tick = async () => {
    const { keyActive } = await kt.exportLinks.progress(link.id, sent());
    if (keyActive || res.destroyed) return;
    revoked = true;
    res.destroy();
  };
  try {
    await assertHolder(kt, link, ip);
    // Validated when the link was made; parsed again for its dates and defaults.
    const query = parseInput(CreateExportBody, link.query, 'body');
    if (query.format === 'csv') header = 1;
    // `to` left out: the moment the download starts.
    const filter = filterOf(link.orgId, query, kt.clock.now());
    guardExport(kt, link.orgId, res);
    const timer = setInterval(() => void tick().catch(log), PROGRESS_EVERY_MS);
    try {
      await streamEvents(kt, res, filter, query.format, meter);
      await finished(res).catch(() => undefined);
    } finally {
      clearInterval(timer);
    }
    if (!res.writableFinished) {
      const cut = res.locals.exportCut as string | undefined;
      failure = revoked
        ? REVOKED
        : cut
          ? `cut (${cut}): see the export limits in the operations guide`
          : 'the download was cut before its end (the client left, or the server failed)';
    }
  } catch (error) {
    failure = failureOf(error);
    throw error;
  } finally {
    await kt.exportLinks.finish(link.id, sent(), failure).catch(log);
  }
}

export function exportsRoutes(kt: Keytrail): { org: Router; download: Router } {
  const org = Router();
  org.post(
    '/api/orgs/:orgId/exports',
    kt.requireKey({ orgParam: 'orgId', scopes: [SCOPE] }),
    async (req, res) => {
      const body = parseInput(CreateExportBody, req.body, 'body');
      const orgId = req.params.orgId as string;
      // A bad range is refused now, not when the download starts.
      filterOf(orgId, body, kt.clock.now());
      const caller = req.apiKey as { id: string };
      const { link, token } = await kt.exportLinks.create(
        { keyId: caller.id, orgId },
        req.body as unknown,
      );
      res.status(201).json({ ...exportJson(link), url: `/api/exports/${token}` });
    },
  );
  org.get(
    '/api/orgs/:orgId/exports/:exportId',
    kt.requireKey({ orgParam: 'orgId', scopes: [SCOPE] }),
    async (req, res) => {
      const { orgId, exportId } = parseInput(ExportParams, req.params, 'path');
      const link = await kt.exportLinks.get(orgId, exportId);
      if (!link) throw new AppError('not_found', { detail: 'export not found' });
      res.json(exportJson(link));
    },
  );

  const files = Router();
  const PATH = '/api/exports/:token';
  // Whatever the answer: the link is a credential, and the body holds what callers sent.
  files.use(PATH, (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });
  // Express would answer HEAD with the GET handler: a link checker would spend the link.
  files.head(PATH, (_req, res) => {
    res.setHeader('Allow', 'GET');
    throw new AppError('method_not_allowed', { detail: 'open the link with GET, once' });
  });
  files.get(PATH, async (req, res) => {
    const { token } = parseInput(ExportTokenParams, req.params, 'path');
    const link = await kt.exportLinks.claim(token);
    if (!link) {
      throw new AppError('not_found', { detail: 'this export link is unknown, used or expired' });
    }
    await download(kt, link, req.ip, res);
  });
  return { org, download: files };
}
