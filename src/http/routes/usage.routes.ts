import { Router } from 'express';
import type { Keytrail } from '../../keytrail.ts';
import { ReportEventsBody } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export function usageRoutes(kt: Keytrail): Router {
  const router = Router();

  router.post(
    '/api/orgs/:orgId/usage-events',
    kt.requireKey({ orgParam: 'orgId', scopes: ['events:write'] }),
    async (req, res) => {
      const body = parseInput(ReportEventsBody, req.body ?? {}, 'body');
      const result = await kt.usage.report(
        req.params.orgId as string,
        body.events.map((e) => ({
          eventId: e.event_id,
          keyId: e.key_id,
          occurredAt: e.occurred_at,
          method: e.method,
          path: e.path,
          route: e.route,
          status: e.status,
          latencyMs: e.latency_ms,
          ip: e.ip,
          userAgent: e.user_agent,
          outcome: e.outcome,
        })),
      );
      res.status(202).json(result);
    },
  );

  router.get('/metrics', async (_req, res) => {
    res.type(kt.metrics.registry.contentType).send(await kt.metrics.registry.metrics());
  });

  return router;
}
