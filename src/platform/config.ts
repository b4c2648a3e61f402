import { z } from 'zod';
import { parseNetworks, type AddressPolicy } from './ssrf.ts';

const positiveInt = (fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(1).max(max).default(fallback);

/**
 * Every setting keytrail reads from the environment. Parsed once at start-up by the entry
 * points (src/main.ts, workers/main.ts, bin/); everything else receives a `Config`.
 */
export const configSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  KEYTRAIL_KEY_PEPPER: z.string().min(32, 'must be at least 32 characters').optional(),
  KEYTRAIL_OPERATOR_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  KEYTRAIL_MAX_KEYS_PER_ORG: positiveInt(1000, 1_000_000),
  KEYTRAIL_DORMANT_DAYS: positiveInt(30, 3650),
  // At least the 7 days reported events may reach back: an accepted event is never already past
  // retention, so its month is never pruned before it is ingested.
  KEYTRAIL_RETENTION_DAYS: z.coerce
    .number()
    .int()
    .min(7, 'must be at least 7 (reported events may be 7 days old)')
    .max(3650)
    .default(90),
  // Hourly series reach back 14 days and the spike baseline 8 (SPEC §5): fewer would cut them.
  KEYTRAIL_HOURLY_RETENTION_DAYS: z.coerce.number().int().min(14).max(3650).default(35),
  // The spike baseline reads the whole days of the 8 days before now from the daily rollup.
  KEYTRAIL_ROLLUP_RETENTION_DAYS: z.coerce
    .number()
    .int()
    .min(8, 'must be at least 8 (the spike baseline reads the last 8 days of daily rows)')
    .max(3650)
    .default(400),
  KEYTRAIL_TRUST_PROXY: z.string().default('false'),
  KEYTRAIL_DEMO_ROUTES: z.stringbool().optional(),
  /** The embedded quick start's Demo org gets sample keys and two weeks of usage on first start. */
  KEYTRAIL_DEMO_DATA: z.stringbool().default(true),
  KEYTRAIL_KEY_CACHE_SIZE: positiveInt(10_000, 10_000_000),
  KEYTRAIL_KEY_CACHE_TTL_MS: positiveInt(30_000, 30_000),
  KEYTRAIL_KEY_NEGATIVE_TTL_MS: positiveInt(2_000, 30_000),
  /** Unknown keys remembered (their own LRU: they never evict real keys). */
  KEYTRAIL_KEY_NEGATIVE_CACHE_SIZE: positiveInt(10_000, 10_000_000),
  /** Lookups of uncached keys per client IP: a sustained rate per second and a burst. */
  KEYTRAIL_AUTH_MISS_RATE: positiveInt(100, 100_000),
  KEYTRAIL_AUTH_MISS_BURST: positiveInt(1000, 1_000_000),
  KEYTRAIL_DB_POOL_SIZE: positiveInt(10, 200),
  /** Per-key rate limits: how often each instance claims credit and gives back what it left. */
  KEYTRAIL_LIMITS_SYNC_MS: z.coerce.number().int().min(50).max(5_000).default(250),
  /** Quotas while Postgres cannot be reached: admit and debit later (true), or 503 (false). */
  KEYTRAIL_QUOTA_FAIL_OPEN: z.stringbool().default(false),
  /** Deadline of every statement of authentication, key changes and other short requests. */
  KEYTRAIL_STATEMENT_TIMEOUT_MS: positiveInt(5_000, 600_000),
  /** Raw-event pages, analytics and audit reads: their pool, deadline and share per org. */
  KEYTRAIL_READS_POOL_SIZE: positiveInt(4, 100),
  KEYTRAIL_READ_TIMEOUT_MS: positiveInt(15_000, 600_000),
  KEYTRAIL_READS_PER_ORG: positiveInt(2, 100),
  /** Streamed exports at once per instance (their own pool of this size) and per org. */
  KEYTRAIL_EXPORTS_MAX: positiveInt(4, 100),
  KEYTRAIL_EXPORTS_PER_ORG: positiveInt(2, 100),
  /** An export running longer is cut (an incomplete file: ask for smaller ranges). */
  KEYTRAIL_EXPORT_MAX_SECONDS: positiveInt(900, 86_400),
  KEYTRAIL_SPIKE_FACTOR: z.coerce.number().min(1).max(1000).default(3),
  KEYTRAIL_SPIKE_MIN_REQUESTS: positiveInt(100, 1_000_000_000),
  KEYTRAIL_USAGE_TRACKING: z.stringbool().default(true),
  KEYTRAIL_USAGE_FLUSH_INTERVAL_MS: positiveInt(250, 60_000),
  KEYTRAIL_USAGE_BATCH_SIZE: positiveInt(5000, 10_000),
  KEYTRAIL_USAGE_BUFFER_MAX: positiveInt(100_000, 10_000_000),
  /** Distinct routes per key and UTC day in the per-route rollup; beyond, `(other)`. */
  KEYTRAIL_MAX_ROUTES_PER_KEY_DAY: positiveInt(200, 100_000),
  KEYTRAIL_WORKER_CONCURRENCY: positiveInt(2, 64),
  KEYTRAIL_WORKER_BATCH_JOBS: positiveInt(8, 100),
  /** `keytrail worker` serves /metrics and /healthz here (0: off). */
  KEYTRAIL_WORKER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464),
  /** Webhooks may reach loopback addresses, and plain http to them (local testing only). */
  KEYTRAIL_WEBHOOK_ALLOW_LOOPBACK: z.stringbool().default(false),
  /** Networks webhooks may reach although private, each with its ports (`10.20.0.0/16:443`). */
  KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS: z
    .string()
    .default('')
    .superRefine((v, ctx) => {
      try {
        parseNetworks(v);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
      }
    }),
  /** The first webhook retry's delay; each next one doubles (with jitter), up to an hour. */
  KEYTRAIL_WEBHOOK_RETRY_DELAY_SECONDS: positiveInt(30, 3600),
  /** Where the embedded quick start keeps its cluster and generated secrets. */
  KEYTRAIL_DATA_DIR: z.string().min(1).default('.data'),
  KEYTRAIL_LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info'),
  /** `auto`: human-readable in a terminal, JSON lines when piped (log shippers read those). */
  KEYTRAIL_LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
});

export type Env = z.infer<typeof configSchema>;

/** An export's slowest acceptable reader: 32 KiB per 30 s (~1 KiB/s) while its socket is full. */
const EXPORT_MIN_BYTES = 32 * 1024;
const EXPORT_WINDOW_MS = 30_000;
const EXPORT_IDLE_MS = 60_000;
/** Reads of one org waiting for its share beyond these are refused (429). */
const READS_QUEUE_PER_ORG = 32;
const READS_WAIT_MS = 10_000;

export type Config = {
  databaseUrl: string;
  port: number;
  host: string;
  keyPepper: string;
  operatorToken: string | undefined;
  maxKeysPerOrg: number;
  dormantDays: number;
  spike: { factor: number; minRequests: number };
  retentionDays: number;
  hourlyRetentionDays: number;
  rollupRetentionDays: number;
  trustProxy: boolean | number | string;
  demoRoutes: boolean;
  demoData: boolean;
  keyCache: { size: number; ttlMs: number; negativeTtlMs: number; negativeSize: number };
  /** Per client IP: lookups that miss the cache (each costs Postgres a query). */
  authMisses: { perSecond: number; burst: number };
  dbPoolSize: number;
  limits: { syncMs: number; quotaFailOpen: boolean };
  /** Statement deadline of the request pool (authentication, key changes, short reads). */
  statementTimeoutMs: number;
  /**
   * Expensive reads (raw-event pages, analytics, audit trail): a pool of their own, a longer
   * deadline, and at most `perOrg` at once per org, `queuePerOrg` more waiting up to `waitMs`.
   */
  reads: {
    poolSize: number;
    statementTimeoutMs: number;
    perOrg: number;
    queuePerOrg: number;
    waitMs: number;
  };
  exports: {
    max: number;
    perOrg: number;
    maxDurationMs: number;
    /** Cut a client that read less than `minBytes` in a `windowMs` while the socket was full. */
    minBytes: number;
    windowMs: number;
    /** Cut a client that read nothing for this long. */
    idleMs: number;
  };
  usage: {
    tracking: boolean;
    flushIntervalMs: number;
    batchSize: number;
    bufferMax: number;
  };
  worker: { concurrency: number; batchJobs: number; metricsPort: number; routesPerKeyDay: number };
  webhooks: WebhookConfig;
  logLevel: Env['KEYTRAIL_LOG_LEVEL'];
  logFormat: Env['KEYTRAIL_LOG_FORMAT'];
};

export type WebhookConfig = {
  addresses: AddressPolicy;
  /** One attempt's deadline: connect, send, and the response's status and body. */
  timeoutMs: number;
  /** pg-boss retries: exponential from `delaySeconds`, capped at `maxDelaySeconds`. */
  retry: { limit: number; delaySeconds: number; maxDelaySeconds: number };
  /** An endpoint failing for this long (every attempt since) is disabled. */
  disableAfterMs: number;
  /** A rotated secret keeps signing beside the new one for this long. */
  previousSecretMs: number;
  /** Deliveries in flight per worker process. */
  concurrency: number;
  /** Deliveries in flight per org in each worker process (pg-boss local group concurrency). */
  perOrgConcurrency: number;
  /** The relay's poll when no notification came (one is sent on every commit). */
  relayPollMs: number;
  /** Endpoints per org. */
  maxPerOrg: number;
  /** Nameservers for webhook hosts (`ip` or `ip:port`); the system's when absent (tests set it). */
  dnsServers?: readonly string[] | undefined;
};

const DAY_MS = 86_400_000;

/**
 * Retries enough for a delivery to be tried for at least `spanSeconds`: pg-boss's n-th retry
 * (from 0) waits between delay × 2^n and twice that, capped at `maxDelaySeconds`. From 30 s:
 * 30 retries, 24.1 to 25 h.
 */
export function retryLimitFor(delaySeconds: number, maxDelaySeconds: number, spanSeconds = 86_400) {
  let total = 0;
  let n = 0;
  while (total < spanSeconds) total += Math.min(maxDelaySeconds, delaySeconds * 2 ** n++);
  return n;
}

/** 30 retries from 30 s, doubling (with jitter) up to an hour: 24–25 h before giving up. */
export const WEBHOOK_DEFAULTS: Omit<WebhookConfig, 'addresses'> = {
  timeoutMs: 10_000,
  retry: { limit: 30, delaySeconds: 30, maxDelaySeconds: 3600 },
  disableAfterMs: 3 * DAY_MS,
  previousSecretMs: DAY_MS,
  concurrency: 8,
  perOrgConcurrency: 4,
  relayPollMs: 5_000,
  maxPerOrg: 20,
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Every problem on one line: `invalid configuration: A: why; B: why`. */
function configError(problems: string[]): ConfigError {
  return new ConfigError(`invalid configuration: ${problems.join('; ')}`);
}

/**
 * Parses the environment, reporting every problem at once. A variable set to the empty string
 * counts as unset: `.env` and compose files often leave `DATABASE_URL=` empty.
 */
export function parseEnv(source: Record<string, string | undefined>): Env {
  const present = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== ''));
  const result = configSchema.safeParse(present);
  if (!result.success) {
    throw configError(result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  return result.data;
}

/** Express's trust-proxy setting: true/false, a hop count, or a list of addresses/subnets. */
function parseTrustProxy(raw: string): boolean | number | string {
  if (raw === 'true') return true;
  if (raw === 'false' || raw === '') return false;
  if (/^\d+$/.test(raw)) return Number(raw);
  return raw;
}

/**
 * Builds the runtime config. `databaseUrl` and `keyPepper` must be resolved by then: with an
 * external `DATABASE_URL` the pepper is required; the embedded default supplies both.
 */
export function toConfig(
  env: Env,
  resolved: { databaseUrl: string; keyPepper: string; embedded: boolean },
): Config {
  return {
    databaseUrl: resolved.databaseUrl,
    port: env.PORT,
    host: env.HOST,
    keyPepper: resolved.keyPepper,
    operatorToken: env.KEYTRAIL_OPERATOR_TOKEN,
    maxKeysPerOrg: env.KEYTRAIL_MAX_KEYS_PER_ORG,
    dormantDays: env.KEYTRAIL_DORMANT_DAYS,
    spike: { factor: env.KEYTRAIL_SPIKE_FACTOR, minRequests: env.KEYTRAIL_SPIKE_MIN_REQUESTS },
    retentionDays: env.KEYTRAIL_RETENTION_DAYS,
    hourlyRetentionDays: env.KEYTRAIL_HOURLY_RETENTION_DAYS,
    rollupRetentionDays: env.KEYTRAIL_ROLLUP_RETENTION_DAYS,
    trustProxy: parseTrustProxy(env.KEYTRAIL_TRUST_PROXY),
    // Demo routes are on by default only for the embedded quick start.
    demoRoutes: env.KEYTRAIL_DEMO_ROUTES ?? resolved.embedded,
    demoData: env.KEYTRAIL_DEMO_DATA,
    keyCache: {
      size: env.KEYTRAIL_KEY_CACHE_SIZE,
      ttlMs: env.KEYTRAIL_KEY_CACHE_TTL_MS,
      negativeTtlMs: env.KEYTRAIL_KEY_NEGATIVE_TTL_MS,
      negativeSize: env.KEYTRAIL_KEY_NEGATIVE_CACHE_SIZE,
    },
    authMisses: { perSecond: env.KEYTRAIL_AUTH_MISS_RATE, burst: env.KEYTRAIL_AUTH_MISS_BURST },
    dbPoolSize: env.KEYTRAIL_DB_POOL_SIZE,
    limits: {
      syncMs: env.KEYTRAIL_LIMITS_SYNC_MS,
      quotaFailOpen: env.KEYTRAIL_QUOTA_FAIL_OPEN,
    },
    statementTimeoutMs: env.KEYTRAIL_STATEMENT_TIMEOUT_MS,
    reads: {
      poolSize: env.KEYTRAIL_READS_POOL_SIZE,
      statementTimeoutMs: env.KEYTRAIL_READ_TIMEOUT_MS,
      perOrg: env.KEYTRAIL_READS_PER_ORG, // at most the pool's size: KeyedGate clamps it
      queuePerOrg: READS_QUEUE_PER_ORG,
      waitMs: READS_WAIT_MS,
    },
    exports: {
      max: env.KEYTRAIL_EXPORTS_MAX,
      perOrg: env.KEYTRAIL_EXPORTS_PER_ORG,
      maxDurationMs: env.KEYTRAIL_EXPORT_MAX_SECONDS * 1000,
      minBytes: EXPORT_MIN_BYTES,
      windowMs: EXPORT_WINDOW_MS,
      idleMs: EXPORT_IDLE_MS,
    },
    usage: {
      tracking: env.KEYTRAIL_USAGE_TRACKING,
      flushIntervalMs: env.KEYTRAIL_USAGE_FLUSH_INTERVAL_MS,
      batchSize: env.KEYTRAIL_USAGE_BATCH_SIZE,
      bufferMax: env.KEYTRAIL_USAGE_BUFFER_MAX,
    },
    worker: {
      concurrency: env.KEYTRAIL_WORKER_CONCURRENCY,
      batchJobs: env.KEYTRAIL_WORKER_BATCH_JOBS,
      metricsPort: env.KEYTRAIL_WORKER_METRICS_PORT,
      routesPerKeyDay: env.KEYTRAIL_MAX_ROUTES_PER_KEY_DAY,
    },
    webhooks: {
      ...WEBHOOK_DEFAULTS,
      retry: {
        delaySeconds: env.KEYTRAIL_WEBHOOK_RETRY_DELAY_SECONDS,
        maxDelaySeconds: WEBHOOK_DEFAULTS.retry.maxDelaySeconds,
        limit: retryLimitFor(
          env.KEYTRAIL_WEBHOOK_RETRY_DELAY_SECONDS,
          WEBHOOK_DEFAULTS.retry.maxDelaySeconds,
        ),
      },
      addresses: {
        allowLoopback: env.KEYTRAIL_WEBHOOK_ALLOW_LOOPBACK,
        allowedNetworks: parseNetworks(env.KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS),
      },
    },
    logLevel: env.KEYTRAIL_LOG_LEVEL,
    logFormat: env.KEYTRAIL_LOG_FORMAT,
  };
}

/** Config for an external database: the pepper must come from the environment. */
export function configFromEnv(env: Env): Config {
  const missing: string[] = [];
  if (!env.DATABASE_URL) missing.push('DATABASE_URL: required');
  if (!env.KEYTRAIL_KEY_PEPPER) missing.push('KEYTRAIL_KEY_PEPPER: required with DATABASE_URL');
  if (!env.DATABASE_URL || !env.KEYTRAIL_KEY_PEPPER) throw configError(missing);
  return toConfig(env, {
    databaseUrl: env.DATABASE_URL,
    keyPepper: env.KEYTRAIL_KEY_PEPPER,
    embedded: false,
  });
}
