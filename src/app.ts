import express, { Router, type Express, type RequestHandler } from 'express';
import type { Keytrail } from './keytrail.ts';
import { accessLog } from './http/middleware/access-log.ts';
import { errorHandler, notFoundHandler } from './http/middleware/errors.ts';
import { requestContext } from './http/middleware/request-context.ts';
import { jsonBody } from './http/middleware/json-body.ts';
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
import { policiesRoutes } from './http/routes/policies.routes.ts';
import { webhooksRoutes } from './http/routes/webhooks.routes.ts';
import { exportsRoutes } from './http/routes/exports.routes.ts';

/** Request bodies are limited to 1 MiB. */
export const BODY_LIMIT = 1024 * 1024;

/**
 * Sends a request only to the routers registered for its path's first `depth` segments (`api`,
 * `v1`, `api/keys`…): the others' layers are never walked. Router templates are unchanged
 * (nothing is mounted under a path, so `req.baseUrl` stays empty).
 */
function bySegment(routes: Map<string, RequestHandler>, depth = 1): RequestHandler {
  return (req, res, next) => {
    const path = req.path;
    let end = 0;
    for (let i = 0; i < depth && end !== -1; i++) end = path.indexOf('/', end + 1);
    // Lower case: Express routes match paths case-insensitively.
    const handler = routes.get((end === -1 ? path.slice(1) : path.slice(1, end)).toLowerCase());
    if (handler) handler(req, res, next);
    else next();
  };
}

function group(...routers: Router[]): Router {
  const router = Router();
  for (const r of routers) router.use(r);
  return router;
}

/** The keytrail HTTP app, without listen(): used by `keytrail serve` and by the tests. */
export function buildApp(kt: Keytrail): Express {
  const app = express();
  app.disable('x-powered-by');
  // No ETag on API answers: hashing every JSON body cost more than any revalidation saves (the
  // admin bundle's static files keep theirs).
  app.set('etag', false);
  app.set('trust proxy', kt.config.trustProxy);
  app.set('query parser', 'simple');
  app.use(requestContext);
  app.use(accessLog(kt.logger, kt.metrics.requestDuration));
  app.use(jsonBody(BODY_LIMIT));
  const system = systemRoutes(kt);
  const usage = usageRoutes(kt);
  const exports = exportsRoutes(kt);
  // Second level: /api/keys/… (verify, the caller's own key) never walks the org routers.
  const api = bySegment(
    new Map<string, RequestHandler>([
      [
        'api/orgs',
        group(
          orgsRoutes(kt),
          // Before keysRoutes: /api-keys/usage must not be taken for /api-keys/:keyId.
          analyticsRoutes(kt),
          keysRoutes(kt),
          eventsRoutes(kt),
          exports.org,
          auditRoutes(kt),
          policiesRoutes(kt),
          webhooksRoutes(kt),
          usage,
        ),
      ],
      ['api/keys', group(verifyRoutes(kt), keysSelfRoutes(kt))],
      ['api/exports', exports.download],
    ]),
    2,
  );
  const routes = new Map<string, RequestHandler>([
    ['api', api],
    ['metrics', usage],
    ['healthz', system],
    ['readyz', system],
    ['openapi.json', system],
  ]);
  if (kt.config.demoRoutes) routes.set('v1', demoRoutes(kt));
  app.use(bySegment(routes));
  app.use('/admin', adminRoutes());
  app.use(notFoundHandler);
  app.use(errorHandler(kt.logger));
  return app;
}
