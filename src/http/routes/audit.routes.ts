import { Router } from 'express';
import { z } from 'zod';
import type { Keytrail } from '../../keytrail.ts';
import { listAuditEvents } from '../../audit/audit.service.ts';
import { shownWebhookDetails } from '../../webhooks/audit-details.ts';
import { CursorTime, decodeCursor, encodeCursor } from '../cursor.ts';
import { AuditQuery } from '../schemas.ts';
import { parseInput } from '../validate.ts';
import { readShare } from '../middleware/read-share.ts';

const auditCursor = z.tuple([CursorTime, z.uuid()]);

export function auditRoutes(kt: Keytrail): Router {
  const router = Router();
  router.get(
    '/api/orgs/:orgId/audit-events',
    kt.requireKey({ orgParam: 'orgId', scopes: ['audit:read'] }),
    readShare(kt),
    async (req, res) => {
      const query = parseInput(AuditQuery, req.query, 'query');
      const cursor = query.cursor ? decodeCursor(query.cursor, auditCursor) : undefined;
      const rows = await listAuditEvents(kt.readsDatabase.db, {
        orgId: req.params.orgId as string,
        keyId: query.key_id,
        action: query.action,
        limit: query.limit + 1,
        before: cursor && { occurredAt: new Date(cursor[0]), id: cursor[1] },
      });
      const page = rows.slice(0, query.limit);
      const last = page.at(-1);
      res.json({
        data: page.map((r) => ({
          id: r.id,
          occurred_at: r.occurred_at.toISOString(),
          action: r.action,
          actor: { type: r.actor_type, key_id: r.actor_key_id },
          target: { type: r.target_type, id: r.target_id },
          details: shownWebhookDetails(r.action, r.details),
        })),
        next_cursor:
          rows.length > query.limit && last
            ? encodeCursor([last.occurred_at.toISOString(), last.id])
            : null,
      });
    },
  );
  return router;
}
