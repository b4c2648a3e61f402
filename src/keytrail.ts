import type { Config } from './platform/config.ts';
import { systemClock, type Clock } from './platform/clock.ts';
import { createDb, type DbHandle } from './platform/db.ts';
import { createLogger, type Logger } from './platform/logger.ts';
import { listen, type Listener } from './platform/notify.ts';
import { ensureQueues, sendJob, startQueue, type PgBoss } from './platform/queue.ts';
import { KeyCache } from './keys/key-cache.ts';
import { createKeyAuthenticator, type KeyAuthenticator } from './keys/keys.auth.ts';
import { KEY_CHANGED_CHANNEL } from './keys/keys.queries.ts';
import { createKeysService, type KeysService } from './keys/keys.service.ts';
import { createOrgsService, type OrgsService } from './orgs/orgs.service.ts';
import { createUsageService, type UsageService } from './usage/usage.service.ts';
import { createAnalyticsService, type AnalyticsService } from './usage/analytics.service.ts';
import { createEventsService, type EventsService } from './usage/events.service.ts';
import { createDormantPolicies, type DormantPolicies } from './policies/dormant.service.ts';
import { createWebhooks, type Webhooks } from './webhooks/webhooks.service.ts';
import { ExportSlots } from './usage/export-slots.ts';
import { MissLimiter } from './keys/miss-limiter.ts';
import { USAGE_INGEST_QUEUE } from './usage/usage.jobs.ts';
import { QUEUES } from './usage/usage.queues.ts';
import { createRequireKey, type RequireKey } from './http/middleware/require-key.ts';
import { createMetrics, type Metrics } from './metrics.ts';

export type Keytrail = {
  config: Config;
  logger: Logger;
  clock: Clock;
  database: DbHandle;
  cache: KeyCache;
  /** Cache misses per client IP (each is a Postgres lookup). */
  missLimiter: MissLimiter;
  auth: KeyAuthenticator;
  keys: KeysService;
  orgs: OrgsService;
  usage: UsageService;
  analytics: AnalyticsService;
  events: EventsService;
  dormantPolicies: DormantPolicies;
  webhooks: Webhooks;
  /** Streamed exports' slots; exports read through `exportDatabase`, never `database`. */
  exportSlots: ExportSlots;
  exportDatabase: DbHandle;
  metrics: Metrics;
  /** The started pg-boss instance (started on first use, retried after a failure). */
  queue(): Promise<PgBoss>;
  /** Express middleware factory: `app.use(kt.requireKey({ scopes: ['orders:read'] }))`. */
  requireKey: RequireKey;
  /** Resolves once cache invalidation listens and the queue is started. */
  ready(): Promise<void>;
  /** The LISTEN connection that carries key changes is up and answers its heartbeat. */
  listening(): boolean;
  /** Flushes buffered usage events, then closes connections. */
  close(): Promise<void>;
};

export type KeytrailOptions = { logger?: Logger; clock?: Clock; queueMaintenance?: boolean };

function lazyQueue(config: Config, logger: Logger, maintenance: boolean) {
  let started: Promise<PgBoss> | undefined;
  const get = (): Promise<PgBoss> => {
    started ??= startQueue({ url: config.databaseUrl, logger, maintenance })
      .then(async (boss) => {
        await ensureQueues(boss, QUEUES);
        return boss;
      })
      .catch((error: unknown) => {
        started = undefined; // next use retries
        throw error;
      });
    return started;
  };
  return {
    get,
    stop: async () =>
      started
        ? (await started.catch(() => null))?.stop({ graceful: true, timeout: 10_000 })
        : undefined,
  };
}

/** Wires the services of one keytrail instance: a pool, a LISTEN connection and a queue. */
export function createKeytrail(config: Config, options: KeytrailOptions = {}): Keytrail {
  const logger =
    options.logger ?? createLogger({ level: config.logLevel, format: config.logFormat });
  const clock = options.clock ?? systemClock;
  const database = createDb({ url: config.databaseUrl, poolSize: config.dbPoolSize, logger });
  const cache = new KeyCache(config.keyCache);
  const missLimiter = new MissLimiter(config.authMisses);
  const deps = { db: database.db, clock, cache, pepper: config.keyPepper };
  const auth = createKeyAuthenticator(deps);
  const keys = createKeysService({ ...deps, maxKeysPerOrg: config.maxKeysPerOrg });
  const orgs = createOrgsService({ db: database.db, clock, keys });
  const queue = lazyQueue(config, logger, options.queueMaintenance ?? false);
  const usage = createUsageService({
    db: database.db,
    clock,
    logger,
    tracking: config.usage.tracking,
    buffer: config.usage,
    sink: async (payload) => void (await sendJob(await queue.get(), USAGE_INGEST_QUEUE, payload)),
  });
  const analytics = createAnalyticsService({
    db: database.db,
    clock,
    flushIntervalMs: config.usage.flushIntervalMs,
    spike: config.spike,
  });
  // Exports get a pool of their own, as large as their slots: a slow export never waits for, or
  // holds, a connection the rest of the API and the ingest need.
  const exportDatabase = createDb({
    url: config.databaseUrl,
    poolSize: config.exports.max,
    logger,
    applicationName: 'keytrail-export',
  });
  const exportSlots = new ExportSlots(config.exports);
  const events = createEventsService(database.db, exportDatabase);
  const dormantPolicies = createDormantPolicies({
    db: database.db,
    clock,
    logger,
    flushIntervalMs: config.usage.flushIntervalMs,
    defaultDays: config.dormantDays,
    freshnessTimeoutMs: 60_000,
  });
  const webhooks = createWebhooks({
    db: database.db,
    clock,
    pepper: config.keyPepper,
    config: config.webhooks,
  });
  const metrics = createMetrics();
  metrics.observe({
    bufferSize: () => usage.buffer.size,
    enqueued: () => usage.buffer.stats.enqueued,
    dropped: () => usage.buffer.stats.dropped,
    flushFailures: () => usage.buffer.stats.failures,
    cacheHits: () => cache.stats.hits,
    missesRefused: () => missLimiter.refused,
    cacheMisses: () => cache.stats.misses,
    pools: () => [
      { name: 'main', pool: database.pool },
      { name: 'export', pool: exportDatabase.pool },
    ],
    exportSlots,
  });
  const listener: Listener = listen({
    url: config.databaseUrl,
    channel: KEY_CHANGED_CHANNEL,
    logger,
    onMessage: (keyId) => cache.invalidate(keyId),
    // Notifications missed while disconnected cannot be replayed: start from a clean cache.
    onReconnect: () => cache.clear(),
  });
  return {
    config,
    logger,
    clock,
    database,
    cache,
    auth,
    keys,
    orgs,
    usage,
    analytics,
    events,
    dormantPolicies,
    webhooks,
    exportSlots,
    exportDatabase,
    metrics,
    queue: queue.get,
    missLimiter,
    requireKey: createRequireKey({
      misses: missLimiter,
      auth,
      logger,
      clock,
      record: config.usage.tracking ? usage.record : undefined,
    }),
    listening: () => listener.healthy(),
    async ready() {
      await listener.ready;
      await queue.get();
    },
    async close() {
      await usage.stop();
      await queue.stop();
      await listener.close();
      await exportDatabase.close();
      await database.close();
    },
  };
}
