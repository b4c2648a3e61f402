/**
 * `keytrail serve` and `keytrail worker` as `make start` runs them: the composition root
 * (src/main.ts) on the embedded default and on an external database, in this process.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime, startServer, startWorkerProcess } from '../src/main.ts';
import { freePort, resolveClusterDir } from '../src/platform/embedded-postgres.ts';
import { useTestDatabase, waitFor } from '../src/testing/harness.ts';
import { TEST_PEPPER } from '../src/testing/leak-scan.ts';
import { startWorker } from '../workers/main.ts';

const QUIET = {
  PORT: '0',
  HOST: '127.0.0.1',
  KEYTRAIL_LOG_LEVEL: 'silent',
  KEYTRAIL_USAGE_FLUSH_INTERVAL_MS: '20',
  KEYTRAIL_WORKER_METRICS_PORT: '0',
};

let work = '';
const clusters: string[] = [];
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'keytrail-serve-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  for (const dir of clusters) await rm(path.dirname(dir), { recursive: true, force: true });
});

const bearer = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

function demoFrom(banner: string) {
  const org = /Demo org(?: created:)? ([0-9a-f-]{36})/.exec(banner)?.[1];
  const key = /admin key \(shown once, store it now\): (sk_live_\w+)/.exec(banner)?.[1];
  return { org, key };
}

describe('make start on the embedded default', () => {
  it('creates the Demo org once, ingests in-process, reopens the cluster and starts over without .data', async () => {
    const env = { ...QUIET, KEYTRAIL_DATA_DIR: path.join(work, '.data') };
    const runtime = await openRuntime(env);
    const first = await startServer(runtime, { startWorker });
    const demo = demoFrom(first.banner);
    try {
      expect(first.banner).toMatch(/^keytrail listening on http:\/\/localhost:\d+$/m);
      expect(first.banner).toContain(`admin UI: ${first.baseUrl}/admin`);
      const admin = await fetch(`${first.baseUrl}/admin`);
      expect(admin.status).toBe(200);
      expect(admin.headers.get('content-security-policy')).toContain("script-src 'self'");
      // mkdtemp made `work` 0700: as root the cluster cannot live inside it.
      const placed = await resolveClusterDir(env.KEYTRAIL_DATA_DIR);
      clusters.push(placed.dataDir);
      expect(placed.external).toBe(process.getuid?.() === 0);
      expect(first.banner).toContain(`embedded PostgreSQL data: ${placed.dataDir}`);
      expect(first.banner).toContain(`curl -H "Authorization: Bearer ${demo.key}"`);
      // First start seeds sample keys and usage (KEYTRAIL_DEMO_DATA defaults to true).
      expect(first.banner).toMatch(/sample data: 7 keys and [\d,]+ usage events/);
      const res = await fetch(`${first.baseUrl}/v1/demo/orders/42`, bearer(demo.key ?? ''));
      expect(res.status).toBe(200);
      // The worker runs inside `serve`: usage reaches the totals without a second process.
      await waitFor(
        async () => {
          const list = await fetch(`${first.baseUrl}/api/orgs/${demo.org}/api-keys`, {
            ...bearer(demo.key ?? ''),
          });
          const body = (await list.json()) as { data: { request_count: number }[] };
          return (body.data[0]?.request_count ?? 0) >= 1;
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      // A second command next to the running server reuses its cluster (`keytrail org create`).
      const beside = await openRuntime(env);
      expect(beside.config.databaseUrl).toBe(runtime.config.databaseUrl);
      await beside.stop();
      expect((await fetch(`${first.baseUrl}/healthz`)).status).toBe(200);
    } finally {
      await first.stop();
    }

    const again = await startServer(await openRuntime(env));
    try {
      expect(again.banner).toContain(`Demo org ${demo.org} (its admin key was printed`);
      expect(again.banner).not.toMatch(/sk_live_/);
      // Same pepper, same cluster: the key printed on first start still works.
      const res = await fetch(`${again.baseUrl}/v1/demo/orders/1`, bearer(demo.key ?? ''));
      expect(res.status).toBe(200);
    } finally {
      await again.stop();
    }

    await rm(path.join(work, '.data'), { recursive: true });
    const over = await startServer(await openRuntime({ ...env, KEYTRAIL_DEMO_DATA: 'false' }));
    try {
      const fresh = demoFrom(over.banner);
      expect(fresh.org).toBeDefined();
      expect(fresh.org).not.toBe(demo.org);
      // Without sample data the Demo org holds its admin key only.
      expect(over.banner).not.toContain('sample data');
      const keys = await fetch(`${over.baseUrl}/api/orgs/${fresh.org}/api-keys`, {
        ...bearer(fresh.key ?? ''),
      });
      expect(((await keys.json()) as { data: unknown[] }).data).toHaveLength(1);
      const old = await fetch(`${over.baseUrl}/v1/demo/orders/1`, bearer(demo.key ?? ''));
      expect(old.status).toBe(401);
    } finally {
      await over.stop();
    }
  }, 120_000);
});

describe('on an external database', () => {
  const url = useTestDatabase();
  const env = () => ({ ...QUIET, DATABASE_URL: url(), KEYTRAIL_KEY_PEPPER: TEST_PEPPER });

  it('serves the API without demo routes or a Demo org', async () => {
    const runtime = await openRuntime(env());
    expect(runtime.embedded).toBeNull();
    const running = await startServer(runtime);
    try {
      expect(running.banner).toBe(
        `keytrail listening on ${running.baseUrl}\nadmin UI: ${running.baseUrl}/admin`,
      );
      expect((await fetch(`${running.baseUrl}/readyz`)).status).toBe(200);
      expect((await fetch(`${running.baseUrl}/v1/demo/orders/1`)).status).toBe(404);
    } finally {
      await running.stop();
    }
  });

  it('runs `keytrail worker` with metrics and liveness on a port of its own', async () => {
    const port = String(await freePort());
    const runtime = await openRuntime({ ...env(), KEYTRAIL_WORKER_METRICS_PORT: port });
    const worker = await startWorkerProcess(runtime, startWorker);
    try {
      expect(worker.banner).toBe(`keytrail worker running (metrics on :${port}/metrics)`);
      const metrics = await fetch(`${worker.baseUrl}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/keytrail_/);
      const health = await fetch(`${worker.baseUrl}/healthz`);
      expect(await health.json()).toEqual({ status: 'ok' });
      expect((await fetch(`${worker.baseUrl}/other`)).status).toBe(404);
    } finally {
      await worker.stop();
    }
  });
});
