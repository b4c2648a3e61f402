import express, { type Express } from 'express';
import type { Keytrail } from './keytrail.ts';
import { accessLog } from './http/middleware/access-log.ts';
import { errorHandler, notFoundHandler } from './http/middleware/errors.ts';
import { requestContext, requireJsonBody } from './http/middleware/request-context.ts';
import { keysRoutes } from './http/routes/keys.routes.ts';
import { orgsRoutes } from './http/routes/orgs.routes.ts';
import { demoRoutes, systemRoutes } from './http/routes/system.routes.ts';
import { verifyRoutes } from './http/routes/verify.routes.ts';
import { keysSelfRoutes } from './http/routes/keys-self.routes.ts';
import { usageRoutes } from './http/routes/usage.routes.ts';
import { analyticsRoutes } from './http/routes/analytics.routes.ts';
import { eventsRoutes } from './http/routes/events.routes.ts';
import { auditRoutes } from './http/routes/audit.routes.ts';
import { adminRoutes } from './http/routes/admin.routes.ts';

export const BODY_LIMIT = '1mb';

/** The keytrail HTTP app, without listen(): used by `keytrail serve` and by the tests. */
export function buildApp(kt: Keytrail): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', kt.config.trustProxy);
  app.set('query parser', 'simple');
  app.use(requestContext);
  app.use(accessLog(kt.logger, kt.metrics.requestDuration));
  app.use(requireJsonBody);
  app.use(express.json({ limit: BODY_LIMIT, type: ['application/json', 'application/*+json'] }));
  app.use(systemRoutes(kt));
  app.use(orgsRoutes(kt));
  // Before keysRoutes: /api-keys/usage must not be taken for /api-keys/:keyId.
  app.use(analyticsRoutes(kt));
  app.use(keysRoutes(kt));
  app.use(eventsRoutes(kt));
  app.use(auditRoutes(kt));
  app.use(verifyRoutes(kt));
  app.use(keysSelfRoutes(kt));
  app.use(usageRoutes(kt));
  if (kt.config.demoRoutes) app.use(demoRoutes(kt));
  app.use('/admin', adminRoutes());
  app.use(notFoundHandler);
  app.use(errorHandler(kt.logger));
  return app;
}
