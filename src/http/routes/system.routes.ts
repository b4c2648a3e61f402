import { Router } from 'express';
import { migrationsApplied, ping } from '../../platform/db.ts';
import type { Keytrail } from '../../keytrail.ts';
import { DemoStatusParams } from '../schemas.ts';
import { parseInput } from '../validate.ts';
import { openApiDocument } from '../openapi.ts';

type Check = () => Promise<boolean>;

async function runChecks(checks: Record<string, Check>): Promise<Record<string, 'ok' | 'failing'>> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      const ok = await check().catch(() => false);
      return [name, ok ? 'ok' : 'failing'] as const;
    }),
  );
  return Object.fromEntries(entries);
}

export function systemRoutes(kt: Keytrail, extraChecks: Record<string, Check> = {}): Router {
  const router = Router();
  let document: unknown;

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const checks = await runChecks({
      database: () => ping(kt.database.db),
      migrations: () => migrationsApplied(kt.database.db),
      queue: async () => (await kt.queue()).isInstalled(),
      // Without it, revocations made on other instances stop reaching this one's cache.
      key_changes: () => Promise.resolve(kt.listening()),
      ...extraChecks,
    });
    const ok = Object.values(checks).every((c) => c === 'ok');
    res.status(ok ? 200 : 503).json({ status: ok ? 'ok' : 'unavailable', checks });
  });

  router.get('/openapi.json', (_req, res) => {
    document ??= openApiDocument();
    res.json(document);
  });

  return router;
}

/** Protected example routes for trying keys out (`KEYTRAIL_DEMO_ROUTES`). */
export function demoRoutes(kt: Keytrail): Router {
  const router = Router();
  const anyKey = kt.requireKey();
  router.get('/v1/demo/orders/:id', anyKey, (req, res) => {
    res.json({ id: req.params.id, status: 'shipped', total_cents: 4200, key_id: req.apiKey?.id });
  });
  router.get('/v1/demo/status/:code', anyKey, (req, res) => {
    const { code } = parseInput(DemoStatusParams, req.params, 'path');
    // Deliberately answers with the status asked for, so error rates can be tried out.
    res.status(code).json({ status: code, demo: true });
  });
  return router;
}
