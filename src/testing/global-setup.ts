/**
 * Picks the test database server once per run: DATABASE_URL when set, else Testcontainers when
 * a container runtime answers, else the embedded Postgres in a child process. Migrates a
 * template database that every test file clones (see harness.ts).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { migrateToLatest } from '../platform/db.ts';
import { startEmbeddedPostgres } from '../platform/embedded-postgres.ts';
import { adminQuery, databaseUrl } from './databases.ts';
import { citusNodes, createClusterDatabase, dropOnNodes, freezeTemplate } from './citus.ts';
import { createLogger } from '../platform/logger.ts';
import { ensureQueues, startQueue } from '../platform/queue.ts';
import { QUEUES } from '../usage/usage.queues.ts';
import { buildUi } from '../ui/build.ts';
import { CHROMIUM_PATH, chromiumAvailable } from './browser.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    serverUrl: string;
    templateDatabase: string;
    /** Every node's server URL (Citus: coordinator first), where each test database is made. */
    databaseNodes: string[];
  }
}

type Server = { url: string; source: string; stop(): Promise<void> };

async function tryTestcontainers(): Promise<Server | null> {
  try {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:17-alpine').start();
    return {
      url: container.getConnectionUri(),
      source: 'testcontainers',
      stop: async () => void (await container.stop()),
    };
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    console.log(`[harness] no container runtime (${reason}); using embedded Postgres`);
    return null;
  }
}

async function pickServer(): Promise<Server> {
  const external = process.env.DATABASE_URL;
  if (external) return { url: external, source: 'DATABASE_URL', stop: () => Promise.resolve() };
  const container = await tryTestcontainers();
  if (container) return container;
  // A fresh private folder (no predictable /tmp path another user could plant), traversable by
  // the `postgres` user that runs the cluster when the suite runs as root.
  const scratch = await mkdtemp(path.join(tmpdir(), 'keytrail-test-'));
  await chmod(scratch, 0o711);
  const embedded = await startEmbeddedPostgres({
    dataDir: path.join(scratch, 'pg'),
    persistent: false,
    // Durability buys nothing in a throwaway test cluster.
    postgresFlags: [
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=300',
    ],
  });
  return {
    url: embedded.url,
    source: 'embedded',
    stop: async () => {
      await embedded.stop();
      await rm(scratch, { recursive: true, force: true });
    },
  };
}

/** The admin UI bundle the browser tests load; Chromium present, or said in one line. */
async function prepareBrowserTests(): Promise<void> {
  await buildUi();
  if (chromiumAvailable()) return;
  const line = `Chromium not found at ${CHROMIUM_PATH} (apt-get install -y chromium, or set CHROMIUM_PATH)`;
  if (process.env.CI === 'true') throw new Error(`[harness] ${line}: CI needs the browser tests`);
  console.log(`[harness] ${line}: browser tests skipped`);
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  await prepareBrowserTests();
  const server = await pickServer();
  const template = `keytrail_template_${process.pid}`;
  const cluster = await citusNodes(server.url);
  const nodes = cluster ?? [server.url];
  await dropOnNodes(nodes, template);
  if (cluster) await createClusterDatabase(cluster, template);
  else await adminQuery(server.url, `create database "${template}"`);
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({
      pool: new pg.Pool({ connectionString: databaseUrl(server.url, template), max: 1 }),
    }),
  });
  await migrateToLatest(db);
  await db.destroy();
  // pg-boss's schema and keytrail's queues, installed once and cloned with the template.
  const templateUrl = databaseUrl(server.url, template);
  const silent = createLogger({ level: 'silent' });
  const boss = await startQueue({ url: templateUrl, logger: silent, maintenance: false });
  await ensureQueues(boss, QUEUES);
  await boss.stop({ graceful: false, close: true });
  if (cluster) await freezeTemplate(cluster, template);
  console.log(
    `[harness] database server: ${server.source}${cluster ? ` (Citus, ${cluster.length} nodes)` : ''}`,
  );
  project.provide('serverUrl', server.url);
  project.provide('templateDatabase', template);
  project.provide('databaseNodes', nodes);
  return async () => {
    await dropOnNodes(nodes, template).catch(() => undefined);
    await server.stop();
  };
}
