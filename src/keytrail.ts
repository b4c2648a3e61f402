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
import { createExportLinks, type ExportLinks } from './usage/export-links.service.ts';
import { createOrgTrend, type OrgTrend } from './usage/org-trend.service.ts';
import { createFindings, type Findings } from './usage/findings.service.ts';
import { createDormantPolicies, type DormantPolicies } from './policies/dormant.service.ts';
import { createWebhooks, type Webhooks } from './webhooks/webhooks.service.ts';
import { noticeLowQuotas } from './webhooks/watch.ts';
import { ExportSlots } from './usage/export-slots.ts';
import { KeyedGate } from './platform/keyed-gate.ts';
import { MissLimiter } from './keys/miss-limiter.ts';
import { USAGE_INGEST_QUEUE } from './usage/usage.jobs.ts';
import { queuesFor } from './usage/usage.queues.ts';
import { createRequireKey, type RequireKey } from './http/middleware/require-key.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { createLimits, type Limits } from './limits/limits-sync.ts';
import { registerLimitMetrics } from './limits/limits.metrics.ts';
import { createRateDefaults, orgNotice, type RateDefaults } from './keys/rate-defaults.service.ts';

const ORG_NOTICE = orgNotice('');

export type Keytrail = {
  config: Config;
  logger: Logger;
  clock: Clock;
  /** Requests' short work: authentication, key changes, small reads (a short deadline). */
  database: DbHandle;
  /** Raw-event pages, analytics and audit reads: their own pool and deadline. */
  readsDatabase: DbHandle;
  /** Expensive reads per org at once (`config.reads`); a waiting read holds no connection. */
  readGate: KeyedGate;
  /** The usage ingest's own connections: no request or export can take them. */
  ingestDatabase: DbHandle;
  /** Maintenance, webhook deliveries and key watch (worker side, no request deadline). */
  backgroundDatabase: DbHandle;
  /** Per-key rate limits (SPEC §11): in-memory decisions, credit claimed through `limitsDatabase`. */
  limits: Limits;
  limitsDatabase: DbHandle;
  rateDefaults: RateDefaults;
  cache: KeyCache;
  /** Cache misses per client IP (each is a Postgres lookup). */
  missLimiter: MissLimiter;
  auth: KeyAuthenticator;
  keys: KeysService;
  orgs: OrgsService;
  usage: UsageService;
  analytics: AnalyticsService;
  events: EventsService;
  exportLinks: ExportLinks;
  /** The org at a glance: daily totals and busiest keys (reads pool). */
  orgTrend: OrgTrend;
  /** What an org admin should look at (reads pool). */
  findings: Findings;
  dormantPolicies: DormantPolicies;
  /** The same policies on the background pool: the daily run is not bound by request deadlines. */
  backgroundPolicies: DormantPolicies;
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

export type KeytrailOptions = {
  logger?: Logger;
  clock?: Clock;
  queueMaintenance?: boolean;
  /** Statement deadlines on the request pools (off for the CLI's operator commands). */
  deadlines?: boolean;
};

/** A batch of ingest jobs takes well under a second; a statement past this is stuck. */
const INGEST_STATEMENT_TIMEOUT_MS = 120_000;
const BACKGROUND_POOL_SIZE = 4;
const LIMITS_POOL_SIZE = 2;
const LIMITS_STATEMENT_TIMEOUT_MS = 1_000;

/** The pools of one instance, one per class of work (SPEC §9: no class starves another). */
function createPools(config: Config, logger: Logger, deadlines: boolean) {
  const pool = (
    applicationName: string,
    poolSize: number,
    statementTimeoutMs?: number,
    connectionsPerRequest?: number,
  ) =>
    createDb({
      url: config.databaseUrl,
      poolSize,
      logger,
      applicationName,
      statementTimeoutMs: deadlines ? statementTimeoutMs : undefined,
      connectionsPerRequest,
    });
  return {
    database: pool('keytrail', config.dbPoolSize, config.statementTimeoutMs),
    // One connection per read: the per-org share (readGate) then counts connections exactly.
    readsDatabase: pool(
      'keytrail-reads',
      config.reads.poolSize,
      config.reads.statementTimeoutMs,
      1,
    ),
    // Exports get a pool of their own, as large as their slots: a slow export never waits for,
    // or holds, a connection the rest of the API and the ingest need. A COPY is one statement
    // for the whole export: its deadline is the export's own limit.
    exportDatabase: pool(
      'keytrail-export',
      config.exports.max,
      config.exports.maxDurationMs + 30_000,
    ),
    ingestDatabase: pool(
      'keytrail-ingest',
      config.worker.concurrency + 1,
      INGEST_STATEMENT_TIMEOUT_MS,
    ),
    backgroundDatabase: pool('keytrail-background', BACKGROUND_POOL_SIZE),
    // Rate-limit claims: a sync every few hundred ms and the waits of requests without credit.
    // A short deadline: a Postgres that stalls means degraded mode, not stalled requests.
    limitsDatabase: pool('keytrail-limits', LIMITS_POOL_SIZE, LIMITS_STATEMENT_TIMEOUT_MS),
  };
}

function lazyQueue(config: Config, logger: Logger, maintenance: boolean) {
  let started: Promise<PgBoss> | undefined;
  const get = (): Promise<PgBoss> => {
    started ??= startQueue({ url: config.databaseUrl, logger, maintenance })
      .then(async (boss) => {
        await ensureQueues(boss, queuesFor(config.retentionDays));
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
  const pools = createPools(config, logger, options.deadlines ?? true);
  const { database, readsDatabase, exportDatabase, ingestDatabase, backgroundDatabase } = pools;
  const { limitsDatabase } = pools;
  // One slot is one connection of the reads pool (a gated read runs its statements one at a
  // time), so the gate's total is the pool's size and no read ever waits inside the pool.
  const readGate = new KeyedGate({
    total: config.reads.poolSize,
    perKey: config.reads.perOrg,
    queuePerKey: config.reads.queuePerOrg,
    waitMs: config.reads.waitMs,
  });
  const cache = new KeyCache(config.keyCache);
  const missLimiter = new MissLimiter(config.authMisses);
  const deps = { db: database.db, clock, cache, pepper: config.keyPepper };
  const auth = createKeyAuthenticator(deps);
  const keys = createKeysService({ ...deps, maxKeysPerOrg: config.maxKeysPerOrg });
  const rateDefaults = createRateDefaults({ db: database.db, clock, cache });
  const limits = createLimits({
    db: limitsDatabase.db,
    logger,
    ...config.limits,
    onQuotaLow: (subjects) => noticeLowQuotas(limitsDatabase.db, subjects),
  });
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
    db: readsDatabase.db,
    clock,
    flushIntervalMs: config.usage.flushIntervalMs,
    spike: config.spike,
  });
  const exportSlots = new ExportSlots(config.exports);
  const events = createEventsService(readsDatabase.db, exportDatabase);
  const exportLinks = createExportLinks({ db: database.db, background: backgroundDatabase.db });
  const orgTrend = createOrgTrend({ db: readsDatabase.db, clock });
  const findings = createFindings({ db: readsDatabase.db, clock, spike: config.spike });
  const policyDeps = {
    clock,
    logger,
    flushIntervalMs: config.usage.flushIntervalMs,
    defaultDays: config.dormantDays,
    freshnessTimeoutMs: 60_000,
  };
  const dormantPolicies = createDormantPolicies({ ...policyDeps, db: database.db });
  const backgroundPolicies = createDormantPolicies({ ...policyDeps, db: backgroundDatabase.db });
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
      { name: 'reads', pool: readsDatabase.pool },
      { name: 'export', pool: exportDatabase.pool },
      { name: 'ingest', pool: ingestDatabase.pool },
      { name: 'background', pool: backgroundDatabase.pool },
      { name: 'limits', pool: limitsDatabase.pool },
    ],
    exportSlots,
    readGate,
  });
  registerLimitMetrics(metrics.registry, limits);
  const listener: Listener = listen({
    url: config.databaseUrl,
    channel: KEY_CHANGED_CHANNEL,
    logger,
    onMessage: (id) => {
      if (id.startsWith(ORG_NOTICE)) cache.invalidateOrg(id.slice(ORG_NOTICE.length));
      else cache.invalidate(id);
    },
    // Notifications missed while disconnected cannot be replayed: start from a clean cache.
    onReconnect: () => cache.clear(),
  });
  return {
    config,
    logger,
    clock,
    database,
    readsDatabase,
    readGate,
    ingestDatabase,
    backgroundDatabase,
    limits,
    limitsDatabase,
    rateDefaults,
    cache,
    auth,
    keys,
    orgs,
    usage,
    analytics,
    events,
    exportLinks,
    orgTrend,
    findings,
    dormantPolicies,
    backgroundPolicies,
    webhooks,
    exportSlots,
    exportDatabase,
    metrics,
    queue: queue.get,
    missLimiter,
    requireKey: createRequireKey({
      limits,
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
      await limits.close();
      await listener.close();
      for (const handle of Object.values(pools)) await handle.close();
    },
  };
}
