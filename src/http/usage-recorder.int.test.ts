import express from 'express';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { useTestApp, waitFor } from '../testing/harness.ts';
import { createKey, createOrg } from '../testing/factories.ts';

const app = useTestApp();
let worker: Worker;
beforeAll(async () => {
  worker = await startWorker(app().kt);
});
afterAll(async () => worker.stop());

/** Serves an Express app of the test's own (library use) on a free port. */
async function listenOn(host: express.Express) {
  const server = createServer(host);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('usage recorded by requireKey mounted app-wide (library use)', () => {
  it('records every routeless 404 as one route, (unmatched), and abandoned requests as 499', async () => {
    const org = await createOrg(app().client, 'Recorder');
    const k = await createKey(app().client, org);
    let arrived: () => void = () => undefined;
    const slowArrived = new Promise<void>((r) => (arrived = r));
    const host = express();
    host.use(app().kt.requireKey());
    host.get('/slow', () => arrived()); // never answers
    const { base, close } = await listenOn(host);
    const headers = { authorization: `Bearer ${k.key}` };
    try {
      // Guessed paths (scanners, typos) must not become routes of their own.
      for (const path of ['/things/12345?x=1', '/wp-admin/setup.php', '/.env'])
        expect((await fetch(`${base}${path}`, { headers })).status).toBe(404);
      const abort = new AbortController();
      const slow = fetch(`${base}/slow`, { headers, signal: abort.signal });
      await slowArrived;
      abort.abort();
      await expect(slow).rejects.toThrow();

      const events = await waitFor(
        async () => {
          const { rows } = await sql<{ route: string; status: number }>`
          select route, status from api_key_usage_events where key_id = ${k.id}
          order by status`.execute(app().kt.database.db);
          return rows.length === 4 && rows;
        },
        { timeoutMs: 10_000 },
      );
      expect(events).toEqual([
        { route: '(unmatched)', status: 404 },
        { route: '(unmatched)', status: 404 },
        { route: '(unmatched)', status: 404 },
        { route: '/slow', status: 499 },
      ]);
    } finally {
      await close();
    }
  });
});

describe('route templates from the matched layers', () => {
  it('records the mount pattern, not the matched path: /t/:tenant/orders/:id, never a tenant name', async () => {
    const org = await createOrg(app().client, 'Templates');
    const k = await createKey(app().client, org);
    const host = express();
    const tenant = express.Router({ mergeParams: true });
    tenant.get('/orders/:id', app().kt.requireKey(), (_req, res) => void res.json({ ok: true }));
    host.use('/t/:tenant', tenant);
    const v2 = express();
    const nested = express.Router();
    nested.get('/items/:sku', app().kt.requireKey(), (_req, res) => void res.json({ ok: true }));
    v2.use('/shop', nested);
    host.use('/v2', v2);
    const { base, close } = await listenOn(host);
    const headers = { authorization: `Bearer ${k.key}` };
    try {
      for (const path of ['/t/acme/orders/1', '/t/globex/orders/2', '/v2/shop/items/ab-12'])
        expect((await fetch(`${base}${path}`, { headers })).status).toBe(200);
      const routes = await waitFor(
        async () => {
          const { rows } = await sql<{ route: string }>`select route from api_key_usage_events
            where key_id = ${k.id} order by route`.execute(app().kt.database.db);
          return rows.length === 3 && rows.map((r) => r.route);
        },
        { timeoutMs: 10_000 },
      );
      expect(routes).toEqual([
        '/t/:tenant/orders/:id',
        '/t/:tenant/orders/:id',
        '/v2/shop/items/:sku',
      ]);
    } finally {
      await close();
    }
  });
});
