import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { cancelStats } from './platform/db-scope.ts';

type Read = () => number;
/** The dead-letter queue as last counted (src/usage/usage.dead-letter-gauge.ts). */
type DeadLetterReading = { jobs: number; expiring: number; checkedAtMs: number };
/** What pg.Pool tells about itself. */
type PoolStats = { totalCount: number; idleCount: number; waitingCount: number };

/** A counter whose value lives elsewhere (a stats object): set on every scrape. */
function mirroredCounter(registry: Registry, name: string, help: string, read: Read): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

export type Metrics = {
  registry: Registry;
  requestDuration: Histogram<'method' | 'route' | 'status_class'>;
  ingestLagSeconds: Gauge;
  ingested: Counter;
  expired: Counter;
  /** Ingest jobs this process sent to usage.ingest.dead, by reason. */
  ingestDeadLettered: Counter<'reason'>;
  /**
   * Sets where the dead-letter gauges read from: the last background count, never a query
   * (a scrape must answer while Postgres does not). A later call replaces the source.
   */
  observeDeadLetters(read: () => DeadLetterReading | undefined): void;
  webhookDeliveries: Counter<'result'>;
  webhookLagSeconds: Histogram;
  /** Registers the sources read on each scrape. */
  observe(sources: {
    bufferSize: Read;
    enqueued: Read;
    dropped: Read;
    flushFailures: Read;
    cacheHits: Read;
    cacheMisses: Read;
    missesRefused: Read;
    pools: () => { name: string; pool: PoolStats }[];
    exportSlots: {
      used: number;
      max: number;
      refused: Record<'instance' | 'org', number>;
      cut: Record<string, number>;
    };
    /** Expensive reads (raw events, analytics, audit) under the per-org share. */
    readGate: {
      running: number;
      waiting: number;
      refused: Record<'queue_full' | 'wait_timeout', number>;
    };
  }): void;
};

/** One registry per keytrail instance, so several instances can live in one process. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  let deadLetters: () => DeadLetterReading | undefined = () => undefined;
  collectDefaultMetrics({ register: registry, prefix: 'keytrail_process_' });
  return {
    registry,
    requestDuration: new Histogram({
      name: 'keytrail_http_request_duration_seconds',
      help: 'HTTP request latency by route template',
      labelNames: ['method', 'route', 'status_class'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    ingestLagSeconds: new Gauge({
      name: 'keytrail_usage_ingest_lag_seconds',
      help: 'Age of the oldest event in the last batch the worker committed',
      registers: [registry],
    }),
    expired: new Counter({
      name: 'keytrail_usage_events_expired_total',
      help: 'Usage events the worker dropped: older than the raw-event retention (their month may be pruned)',
      registers: [registry],
    }),
    ingestDeadLettered: new Counter({
      name: 'keytrail_usage_jobs_dead_lettered_total',
      help: 'Usage ingest jobs this process dead-lettered: invalid_payload (at once), retries_exhausted (failed on its last retry)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    observeDeadLetters(read) {
      deadLetters = read;
      if (registry.getSingleMetric('keytrail_usage_dead_letter_jobs')) return;
      const gauge = (name: string, help: string, value: (r: DeadLetterReading) => number) =>
        new Gauge({
          name,
          help,
          registers: [registry],
          collect() {
            const r = deadLetters();
            if (r) this.set(value(r));
          },
        });
      gauge(
        'keytrail_usage_dead_letter_jobs',
        'Usage ingest jobs waiting in usage.ingest.dead for `keytrail ingest replay-dead`, as of the last check (10001: more than 10,000). The same in every process: aggregate with max()',
        (r) => r.jobs,
      );
      gauge(
        'keytrail_usage_dead_letter_expiring_jobs',
        'Of keytrail_usage_dead_letter_jobs, the jobs pg-boss deletes within 7 days (their retention ends)',
        (r) => r.expiring,
      );
      gauge(
        'keytrail_usage_dead_letter_checked_timestamp_seconds',
        'When the dead-letter count was last read successfully (refreshed every 30 s)',
        (r) => r.checkedAtMs / 1000,
      );
    },
    webhookDeliveries: new Counter({
      name: 'keytrail_webhook_deliveries_total',
      help: 'Webhook delivery attempts by result: sent (2xx), retried (failed, will retry), failed (given up)',
      labelNames: ['result'],
      registers: [registry],
    }),
    webhookLagSeconds: new Histogram({
      name: 'keytrail_webhook_delivery_lag_seconds',
      help: 'From the event to its successful delivery (retries included)',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21_600, 86_400],
      registers: [registry],
    }),
    ingested: new Counter({
      name: 'keytrail_usage_events_ingested_total',
      help: 'Usage events committed to the events table by this process (duplicates excluded)',
      registers: [registry],
    }),
    observe(s) {
      new Gauge({
        name: 'keytrail_usage_buffer_events',
        help: 'Usage events held in the in-process buffer',
        registers: [registry],
        collect() {
          this.set(s.bufferSize());
        },
      });
      mirroredCounter(
        registry,
        'keytrail_usage_events_enqueued_total',
        'Usage events sent to the queue',
        s.enqueued,
      );
      mirroredCounter(
        registry,
        'keytrail_usage_events_dropped_total',
        'Usage events dropped (buffer full or shutdown)',
        s.dropped,
      );
      mirroredCounter(
        registry,
        'keytrail_usage_flush_failures_total',
        'Failed flushes to the queue',
        s.flushFailures,
      );
      new Gauge({
        name: 'keytrail_db_pool_connections',
        help: 'Database pool connections by pool (main: API and ingest; export: streamed exports) and state',
        labelNames: ['pool', 'state'],
        registers: [registry],
        collect() {
          for (const { name, pool } of s.pools()) {
            this.set({ pool: name, state: 'open' }, pool.totalCount);
            this.set({ pool: name, state: 'idle' }, pool.idleCount);
          }
        },
      });
      new Gauge({
        name: 'keytrail_db_pool_waiting',
        help: 'Queries waiting for a pooled connection (each gives up with 503 after 5 s)',
        labelNames: ['pool'],
        registers: [registry],
        collect() {
          for (const { name, pool } of s.pools()) this.set({ pool: name }, pool.waitingCount);
        },
      });
      new Gauge({
        name: 'keytrail_export_slots',
        help: 'Streamed export slots of this instance: in use, and the maximum',
        labelNames: ['state'],
        registers: [registry],
        collect() {
          this.set({ state: 'in_use' }, s.exportSlots.used);
          this.set({ state: 'max' }, s.exportSlots.max);
        },
      });
      new Counter({
        name: 'keytrail_exports_refused_total',
        help: 'Streamed exports refused: every slot of the instance busy (503), or the org at its limit (429)',
        labelNames: ['reason'],
        registers: [registry],
        collect() {
          this.reset();
          this.inc({ reason: 'instance' }, s.exportSlots.refused.instance);
          this.inc({ reason: 'org' }, s.exportSlots.refused.org);
        },
      });
      new Counter({
        name: 'keytrail_exports_cut_total',
        help: 'Streamed exports cut short: slow_reader, max_duration, idle',
        labelNames: ['reason'],
        registers: [registry],
        collect() {
          this.reset();
          for (const [reason, n] of Object.entries(s.exportSlots.cut)) this.inc({ reason }, n);
        },
      });
      new Gauge({
        name: 'keytrail_reads',
        help: 'Expensive reads (raw-event pages, analytics, audit): running, and waiting for their org share',
        labelNames: ['state'],
        registers: [registry],
        collect() {
          this.set({ state: 'running' }, s.readGate.running);
          this.set({ state: 'waiting' }, s.readGate.waiting);
        },
      });
      new Counter({
        name: 'keytrail_db_cancels_total',
        help: 'Statements of requests whose client left, cancelled (sent) or not (failed: left to their deadline)',
        labelNames: ['result'],
        registers: [registry],
        collect() {
          this.reset();
          this.inc({ result: 'sent' }, cancelStats.sent);
          this.inc({ result: 'failed' }, cancelStats.failed);
        },
      });
      new Counter({
        name: 'keytrail_reads_refused_total',
        help: 'Expensive reads refused with 429: the org queue full, or a wait past its limit',
        labelNames: ['reason'],
        registers: [registry],
        collect() {
          this.reset();
          this.inc({ reason: 'queue_full' }, s.readGate.refused.queue_full);
          this.inc({ reason: 'wait_timeout' }, s.readGate.refused.wait_timeout);
        },
      });
      mirroredCounter(
        registry,
        'keytrail_auth_cache_hits_total',
        'Key lookups answered by the cache',
        s.cacheHits,
      );
      mirroredCounter(
        registry,
        'keytrail_auth_misses_refused_total',
        'Lookups of uncached keys refused with 429: the client address sent too many',
        s.missesRefused,
      );
      mirroredCounter(
        registry,
        'keytrail_auth_cache_misses_total',
        'Key lookups that went to Postgres',
        s.cacheMisses,
      );
    },
  };
}
