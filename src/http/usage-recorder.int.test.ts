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

describe('usage recorded by requireKey mounted app-wide (library use)', () => {
  it('records routeless 404s under a normalised path and abandoned requests as 499', async () => {
    const org = await createOrg(app().client, 'Recorder');
    const k = await createKey(app().client, org);
    let arrived: () => void = () => undefined;
    const slowArrived = new Promise<void>((r) => (arrived = r));
    const host = express();
    host.use(app().kt.requireKey());
    host.get('/slow', () => arrived()); // never answers
    const server = createServer(host);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const headers = { authorization: `Bearer ${k.key}` };
    try {
      const missing = await fetch(`${base}/things/12345?x=1`, { headers });
      expect(missing.status).toBe(404);
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
          return rows.length === 2 && rows;
        },
        { timeoutMs: 10_000 },
      );
      expect(events).toEqual([
        { route: '/things/{id}', status: 404 },
        { route: '/slow', status: 499 },
      ]);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
