/**
 * Composition root of `keytrail serve` and of the CLI commands that need a database. With
 * DATABASE_URL unset it runs the embedded Postgres under ./.data (the quick start).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { buildApp } from './app.ts';
import { createHttpServer } from './http/server.ts';
import { createKeytrail, type Keytrail } from './keytrail.ts';
import { configFromEnv, parseEnv, toConfig, type Config } from './platform/config.ts';
import { createDb, migrateToLatest } from './platform/db.ts';
import {
  resolveClusterDir,
  persistedSecret,
  runningClusterUrl,
  startEmbeddedPostgres,
  wrapperEntry,
} from './platform/embedded-postgres.ts';
import { createLogger, type Logger } from './platform/logger.ts';
import { seedDemoOrg, type DemoOrg } from './demo/seed.ts';
import { KEY_WATCH_QUEUE } from './webhooks/watch.ts';
import type { DestinationStream } from 'pino';

const DEMO_ORG = 'Demo';

export type Runtime = {
  config: Config;
  /** Embedded mode: ./.data (KEYTRAIL_DATA_DIR) and where its cluster lives. */
  embedded: { dataRoot: string; clusterDir: string } | null;
  logger: Logger;
  stop(): Promise<void>;
};

/** Parses the environment and, without DATABASE_URL, brings up the embedded Postgres. */
export async function openRuntime(
  source: Record<string, string | undefined> = process.env,
  options: { logDestination?: DestinationStream } = {},
): Promise<Runtime> {
  const env = parseEnv(source);
  const logger = createLogger(
    { level: env.KEYTRAIL_LOG_LEVEL, format: env.KEYTRAIL_LOG_FORMAT },
    options.logDestination,
  );
  if (env.DATABASE_URL) {
    return { config: configFromEnv(env), embedded: null, logger, stop: () => Promise.resolve() };
  }
  wrapperEntry(); // not installed: say so before creating anything
  const dataRoot = path.resolve(env.KEYTRAIL_DATA_DIR);
  const { dataDir } = await resolveClusterDir(dataRoot);
  const keyPepper =
    env.KEYTRAIL_KEY_PEPPER ??
    (await persistedSecret(path.join(dataRoot, 'pepper'), () =>
      randomBytes(32).toString('base64url'),
    ));
  const running = await runningClusterUrl(dataDir);
  const server = running ? undefined : await startEmbeddedPostgres({ dataDir, persistent: true });
  const databaseUrl = running ?? server?.url ?? '';
  logger.debug({ reused: Boolean(running), cluster: dataDir }, 'embedded postgres ready');
  const config = toConfig(env, { databaseUrl, keyPepper, embedded: true });
  return {
    config,
    embedded: { dataRoot, clusterDir: dataDir },
    logger,
    stop: async () => server?.stop(),
  };
}

export async function migrate(runtime: Runtime): Promise<string[]> {
  const handle = createDb({ url: runtime.config.databaseUrl, poolSize: 1, logger: runtime.logger });
  try {
    return await migrateToLatest(handle.db);
  } finally {
    await handle.close();
  }
}

function sampleLine(seeded: DemoOrg): string {
  if (seeded.failure)
    return `  sample data: incomplete after ${seeded.keys} keys and ${seeded.events} events (${seeded.failure}); delete .data to try again`;
  const events = seeded.events.toLocaleString('en-US');
  return `  sample data: ${seeded.keys} keys and ${events} usage events of the last weeks, queued for the worker (KEYTRAIL_DEMO_DATA=false skips this)`;
}

/**
 * First start of the embedded quick start: a Demo org whose admin key is printed once, with
 * sample keys and usage unless KEYTRAIL_DEMO_DATA=false.
 */
async function ensureDemoOrg(
  kt: Keytrail,
  baseUrl: string,
  dataRoot: string,
  signal: AbortSignal,
): Promise<string> {
  // The demo org is remembered by id in .data: org names are not unique.
  const marker = path.join(dataRoot, 'demo-org');
  const knownId = existsSync(marker) ? (await readFile(marker, 'utf8')).trim() : null;
  const existing = knownId ? await kt.orgs.get(knownId).catch(() => null) : null;
  if (existing) {
    return `Demo org ${existing.id} (its admin key was printed on first start; delete .data to start over)`;
  }
  const seeded = kt.config.demoData ? await seedDemoOrg(kt.config, kt.logger, DEMO_ORG) : null;
  if (seeded) void watchWhenIngested(kt, new Date(), signal);
  const { org, adminKey } = seeded ?? (await kt.orgs.create(DEMO_ORG));
  await writeFile(marker, org.id);
  return [
    `Demo org created: ${org.id}`,
    ...(seeded ? [sampleLine(seeded)] : []),
    `  admin key (shown once, store it now): ${adminKey.plaintext}`,
    `  admin UI:  ${baseUrl}/admin (paste the admin key)`,
    `  try it:    curl -H "Authorization: Bearer ${adminKey.plaintext}" ${baseUrl}/v1/demo/orders/42`,
  ].join('\n');
}

/**
 * Once the worker has ingested the Demo org's sample usage (everything queued before `queued`),
 * one key watch (queued for a worker, as the schedule's are) flags its spike for the findings;
 * the keys table shows it at once. Gives up after 2 minutes (no worker: `serve --no-worker`);
 * the scheduled watch comes anyway.
 */
async function watchWhenIngested(kt: Keytrail, queued: Date, signal: AbortSignal): Promise<void> {
  try {
    const deadline = Date.now() + 120_000;
    while ((await kt.analytics.dataAsOf()) <= queued) {
      if (Date.now() > deadline) {
        kt.logger.warn(
          'demo: the sample usage is not ingested yet; the findings wait for the key watch',
        );
        return;
      }
      await sleep(500, undefined, { signal });
    }
    signal.throwIfAborted();
    await (await kt.queue()).send(KEY_WATCH_QUEUE, {});
  } catch (error) {
    // Stopping the server ends the wait: nothing to report.
    if (!signal.aborted) {
      kt.logger.warn({ err: String(error) }, 'demo: key watch after the sample usage failed');
    }
  }
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
}

export type BackgroundWork = { stop(): Promise<void> };
export type ServeOptions = {
  /** Starts the usage worker in this process (`keytrail serve` without --no-worker). */
  startWorker?: (kt: Keytrail) => Promise<BackgroundWork>;
};

export type RunningServer = {
  baseUrl: string;
  /** The start lines for the terminal (the Demo org's key on first start). */
  banner: string;
  logger?: Logger;
  stop(): Promise<void>;
};

/**
 * Migrates, starts keytrail (and the worker when asked) and listens. `stop()` ends in order:
 * HTTP, usage buffer, worker, pools, then the runtime (the embedded Postgres).
 */
export async function startServer(
  runtime: Runtime,
  options: ServeOptions = {},
): Promise<RunningServer> {
  const { config, logger } = runtime;
  await migrate(runtime);
  const kt = createKeytrail(config, { logger, queueMaintenance: Boolean(options.startWorker) });
  await kt.ready();
  const worker = options.startWorker ? await options.startWorker(kt) : undefined;
  const server = createHttpServer(buildApp(kt));
  await listen(server, config.port, config.host);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const baseUrl = `http://localhost:${port}`;
  const lines = [`keytrail listening on ${baseUrl}`, `admin UI: ${baseUrl}/admin`];
  // Ends the Demo org's background step (waiting for its sample usage) when the server stops.
  const demo = new AbortController();
  if (runtime.embedded) {
    lines.push(`embedded PostgreSQL data: ${runtime.embedded.clusterDir}`);
    lines.push(await ensureDemoOrg(kt, baseUrl, runtime.embedded.dataRoot, demo.signal));
  }
  const stop = async () => {
    demo.abort();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      // Long responses (exports to a client that stopped reading) get 10 s, then are cut.
      setTimeout(() => server.closeAllConnections(), 10_000).unref();
    });
    await kt.usage.stop();
    await worker?.stop();
    await kt.close();
    await runtime.stop();
  };
  return { baseUrl, banner: lines.join('\n'), logger, stop };
}

/** Prints the start lines, then stops on SIGINT/SIGTERM (a second signal exits at once). */
function runUntilSignal(running: RunningServer): void {
  process.stdout.write(`${running.banner}\n`);
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    running.logger?.info({ signal }, 'shutting down');
    void running.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** `keytrail serve`: the API (and the worker unless --no-worker) until SIGINT/SIGTERM. */
export async function serve(options: ServeOptions = {}): Promise<void> {
  runUntilSignal(await startServer(await openRuntime(), options));
}

/** `keytrail worker`: the usage worker alone, until SIGINT/SIGTERM. */
export async function work(startWorker: (kt: Keytrail) => Promise<BackgroundWork>): Promise<void> {
  runUntilSignal(await startWorkerProcess(await openRuntime(), startWorker));
}

/** Migrates and runs the worker with its metrics port; `stop()` ends it and the runtime. */
export async function startWorkerProcess(
  runtime: Runtime,
  startWorker: (kt: Keytrail) => Promise<BackgroundWork>,
): Promise<RunningServer> {
  await migrate(runtime);
  const kt = createKeytrail(runtime.config, { logger: runtime.logger, queueMaintenance: true });
  await kt.ready();
  const worker = await startWorker(kt);
  const metrics = await serveWorkerMetrics(kt);
  const port = metrics ? (metrics.address() as AddressInfo).port : 0;
  return {
    baseUrl: port ? `http://localhost:${port}` : '',
    banner: `keytrail worker running${port ? ` (metrics on :${port}/metrics)` : ''}`,
    logger: runtime.logger,
    async stop() {
      metrics?.close();
      await worker.stop();
      await kt.close();
      await runtime.stop();
    },
  };
}

/** A worker has no API: it exposes its ingest metrics (and liveness) on a port of its own. */
async function serveWorkerMetrics(kt: Keytrail): Promise<Server | undefined> {
  const port = kt.config.worker.metricsPort;
  if (port === 0) return undefined;
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      kt.metrics.registry
        .metrics()
        .then((text) =>
          res.writeHead(200, { 'content-type': kt.metrics.registry.contentType }).end(text),
        )
        .catch(() => res.writeHead(500).end());
      return;
    }
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    res.writeHead(404).end();
  });
  await listen(server, port, kt.config.host);
  kt.logger.info({ port: (server.address() as AddressInfo).port }, 'worker metrics listening');
  return server;
}
