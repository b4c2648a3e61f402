import { rawTransaction, type DbHandle, type RawTransaction } from '../platform/db.ts';
import { aggregate, capRoutes, periodLabels } from './usage.aggregate.ts';
import {
  COPY_EVENTS,
  encodeEventsCopy,
  existingPartitions,
  monthPartitionDdl,
  partitionCreationLock,
  partitionName,
  pruneWatermark,
  storedRoutes,
  insertEventsAsGiven,
  insertEventsSkippingStored,
  storedEvents,
  upsertPeriods,
  upsertRoutes,
  upsertTotals,
} from './usage.queries.ts';
import { identity, rowCount, selectRows, type Batch } from './usage.batch.ts';
import { columnarPartitions } from './compress.queries.ts';
import { decodePayload, encodePayload } from './usage.jobs.ts';
import { OUTCOMES, type UsageEvent } from './usage.types.ts';
import {
  markQuotaNotices,
  keySubjects,
  markRateLimited,
  markRevokedKeyUse,
  type DeniedUse,
  type MarkedUse,
} from '../webhooks/hygiene.queries.ts';
import type { WebhookEventType } from '../webhooks/webhooks.types.ts';
import type { RawBuilder } from 'kysely';
import { writeOutbox } from '../webhooks/outbox.queries.ts';
import { noticeEvents } from '../webhooks/watch.ts';

/** `expired`: events older than the raw-event retention, dropped (their month may be pruned). */
export type IngestResult = { received: number; inserted: number; expired: number };

/** Distinct routes kept per key and UTC day in the per-route rollup (KEYTRAIL_MAX_ROUTES_PER_KEY_DAY). */
export const DEFAULT_ROUTES_PER_KEY_DAY = 200;

/** SQLSTATE of "no partition of relation … found for row". */
const NO_PARTITION = '23514';
/** SQLSTATE of a unique violation: an event of the batch is already stored. */
const UNIQUE_VIOLATION = '23505';

const sqlState = (error: unknown): string | undefined => (error as { code?: string }).code;

/**
 * The error of SQLSTATE `code`, or, from a COPY into a distributed table, Citus's relay of the
 * worker's error as an internal error (XX000) with the same message.
 */
const isError = (error: unknown, code: string, message: string): boolean =>
  sqlState(error) === code ||
  (sqlState(error) === 'XX000' &&
    String((error as { message?: unknown }).message).startsWith(message));
const isUniqueViolation = (error: unknown): boolean =>
  isError(error, UNIQUE_VIOLATION, 'duplicate key value violates unique constraint');
/**
 * No partition for a row. A month closed by a compress refuses rows with a check violation too
 * (the same SQLSTATE), which names its constraint and which a retry does not mend.
 */
const isNoPartition = (error: unknown): boolean =>
  isError(error, NO_PARTITION, 'no partition of relation') &&
  !(error as { constraint?: string }).constraint &&
  // Citus relays a worker's check violation without its constraint; its name is in the message
  // (quoted, in any language).
  !String((error as { message?: unknown }).message).includes('_closed"');

/**
 * Stores the events not stored yet and returns them. The fast path is one COPY: a batch is
 * almost never a replay. If any row is already stored (a replayed job, a gateway retry, a racing
 * worker) or the batch holds one event twice (two jobs of one fetch carrying it, one id sent in
 * two letter cases), the primary key makes the COPY fail as a whole; it is undone to its
 * savepoint and the batch goes through INSERT … ON CONFLICT DO NOTHING RETURNING instead, which
 * skips stored rows and the batch's own repeats, waits for rows a racing transaction has not
 * committed yet, and returns what it inserted. Repeats are left to the primary key rather than
 * looked for: a map of every event id cost ~4 % of the worker's CPU for batches that never
 * have any.
 */
async function storeNew(tx: RawTransaction, batch: Batch): Promise<Batch> {
  await tx.exec('savepoint store_events');
  try {
    await tx.copyIn(COPY_EVENTS, encodeEventsCopy(batch));
    return batch;
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
  }
  await tx.exec('rollback to savepoint store_events');
  const events = decodePayload(batch);
  const rows = await insertSkippingStored(tx, events);
  const inserted = new Set(rows.map(idOf));
  // Each inserted row once: one event sent twice in two letter cases is one row.
  return selectRows(batch, (i) => {
    const e = events[i];
    return e !== undefined && inserted.delete(identity(e.orgId, e.eventId, e.occurredAt));
  });
}

const idOf = (r: { org_id: string; event_id: string; occurred_at: Date }): string =>
  identity(r.org_id, r.event_id, r.occurred_at.getTime());

/**
 * The fallback's insert. Months in columnar storage (`partitions compress`, on Citus) take no
 * ON CONFLICT for new rows: their events are looked up first and only the unstored ones, each
 * once, inserted. Row months keep ON CONFLICT DO NOTHING. A catalog read decides, only here.
 */
async function insertSkippingStored(tx: RawTransaction, events: UsageEvent[]) {
  const columnar = new Set((await tx.run(columnarPartitions())).map((p) => p.name));
  const inColumnar = (e: UsageEvent) => {
    const at = new Date(e.occurredAt);
    return columnar.has(partitionName(at.getUTCFullYear(), at.getUTCMonth() + 1));
  };
  const compressed = columnar.size === 0 ? [] : events.filter(inColumnar);
  const row = compressed.length === 0 ? events : events.filter((e) => !inColumnar(e));
  const rows = row.length === 0 ? [] : await tx.run(insertEventsSkippingStored(row));
  if (compressed.length === 0) return rows;
  const seen = new Set((await tx.run(storedEvents(compressed))).map(idOf));
  const fresh = compressed.filter((e) => {
    const id = identity(e.orgId, e.eventId, e.occurredAt);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
  if (fresh.length > 0) rows.push(...(await tx.run(insertEventsAsGiven(fresh))));
  return rows;
}

const DEAD_KEY = new Set([OUTCOMES.indexOf('revoked'), OUTCOMES.indexOf('expired')]);
const RATE_LIMITED = new Set([OUTCOMES.indexOf('rate_limited')]);
const QUOTA_EXCEEDED = new Set([OUTCOMES.indexOf('quota_exceeded')]);
const SUCCESS = new Set([OUTCOMES.indexOf('success')]);

/** The latest event of each key in the batch whose outcome is one of `outcomes` (usually none). */
function latestUses(batch: Batch, outcomes: ReadonlySet<number>): DeniedUse[] {
  const latest = new Map<number, number>();
  for (let i = 0; i < batch.o.length; i++) {
    if (!outcomes.has(batch.o[i] ?? 0)) continue;
    const k = batch.k[i] ?? 0;
    const seen = latest.get(k);
    if (seen === undefined || (batch.t[seen] ?? 0) < (batch.t[i] ?? 0)) latest.set(k, i);
  }
  return [...latest].map(([k, i]) => ({
    keyId: batch.keys[k]?.[0] ?? '',
    orgId: batch.keys[k]?.[1] ?? '',
    outcome: OUTCOMES[batch.o[i] ?? 0] ?? 'revoked',
    ip: batch.ip[i] ?? null,
    at: new Date(batch.t[i] ?? 0),
  }));
}

/**
 * Notices of what the stored events show, in the ingest transaction and so from the events this
 * transaction stored (a replayed batch adds nothing), each at most once an hour per key:
 * `key.revoked_key_used` (a leaked key still in use) and `key.rate_limited` (a key refused by
 * its own rate limits).
 */
/** Each notice: which stored outcomes raise it, the statement that marks (and returns) its keys. */
const NOTICES: readonly {
  type: WebhookEventType;
  outcomes: ReadonlySet<number>;
  mark: (uses: DeniedUse[]) => RawBuilder<MarkedUse>;
  details: (use: MarkedUse) => Record<string, unknown>;
}[] = [
  {
    type: 'key.revoked_key_used',
    outcomes: DEAD_KEY,
    mark: markRevokedKeyUse,
    details: (u) => ({ outcome: u.outcome, ip: u.ip, occurred_at: u.at.toISOString() }),
  },
  {
    type: 'key.rate_limited',
    outcomes: RATE_LIMITED,
    mark: markRateLimited,
    details: (u) => ({ ip: u.ip, occurred_at: u.at.toISOString() }),
  },
];

async function noticeUses(tx: RawTransaction, stored: Batch): Promise<void> {
  for (const { type, outcomes, mark, details } of NOTICES) {
    const uses = latestUses(stored, outcomes);
    if (uses.length === 0) continue;
    const marked = await tx.run(mark(uses));
    const notices = marked.map((u) => ({ id: u.id, org_id: u.org_id, details: details(u) }));
    await writeOutbox((q) => tx.run(q), noticeEvents(type, notices, new Date()));
  }
  // After use: under 10 % left; after a refusal by the quota: nothing left to take. One
  // statement for both (it locks their quota rows in one ordered pass).
  const low = latestUses(stored, SUCCESS);
  const exhausted = latestUses(stored, QUOTA_EXCEEDED);
  if (low.length + exhausted.length === 0) return;
  const subjects = await tx.run(keySubjects([...low, ...exhausted]));
  const of = (uses: DeniedUse[]) => {
    const ids = new Set(uses.map((u) => u.keyId));
    return subjects.filter((s) => ids.has(s.key_id));
  };
  const notices = await tx.run(markQuotaNotices({ low: of(low), exhausted: of(exhausted) }));
  for (const type of ['key.quota_low', 'key.quota_exhausted'] as const) {
    const ofType = notices.filter((n) => n.kind === type);
    await writeOutbox((q) => tx.run(q), noticeEvents(type, ofType, new Date()));
  }
}

/**
 * Writes a batch of events and their rollups in ONE transaction, exactly once: only events this
 * transaction stored are aggregated, so a replayed job or a racing worker adds nothing.
 * A month without a partition gets one inside the same transaction (see docs/architecture.md).
 */
/**
 * Events of months past `retentionDays` (prune's rule), and of missing months before prune's
 * watermark (pruned, maybe by `prune --retention-days` with a shorter retention), are dropped
 * and counted, never stored: storing a replay of an old job would count it again in the lifetime
 * totals and recreate a pruned month's partition. Without `retentionDays` (tests, benchmarks)
 * only the watermark applies.
 */
export function createIngester(
  database: Pick<DbHandle, 'db' | 'pool' | 'stats'>,
  options: { retentionDays?: number; now?: () => number; routesPerKeyDay?: number } = {},
) {
  const now = options.now ?? Date.now;
  const routeCap = options.routesPerKeyDay ?? DEFAULT_ROUTES_PER_KEY_DAY;
  // Months whose partition this process has seen exist. A prune (in any process) can drop one;
  // the copy then fails with "no partition", the cache is cleared and the batch retried once.
  const knownMonths = new Set<string>();

  /**
   * Creates the partitions of months this process has not seen, when missing: one catalog read
   * first (a fresh worker meets existing months and takes no lock for them), then, only for a
   * genuinely new month, the creation lock and the DDL, before anything else in the transaction.
   * A missing month before prune's watermark was pruned (by the schedule or by
   * `prune --retention-days`): it is not recreated, and comes back for its events to be dropped.
   */
  async function ensureMonths(tx: RawTransaction, unseen: string[]): Promise<Set<string>> {
    const pruned = new Set<string>();
    if (unseen.length === 0) return pruned;
    const parsed = unseen.sort().map((m) => {
      const [year = 1970, month = 1] = m.split('-').map(Number);
      return {
        key: m,
        year,
        month,
        name: partitionName(year, month),
        end: Date.UTC(year, month, 1),
      };
    });
    const existing = new Set(
      (await tx.run(existingPartitions(parsed.map((p) => p.name)))).map((r) => r.name),
    );
    const missing = parsed.filter((p) => !existing.has(p.name));
    if (missing.length === 0) return pruned;
    const [mark] = await tx.run(pruneWatermark());
    const create = missing.filter((p) => {
      const gone = mark !== undefined && p.end <= mark.pruned_before.getTime();
      if (gone) pruned.add(p.key);
      return !gone;
    });
    if (create.length === 0) return pruned;
    await tx.run(partitionCreationLock());
    for (const p of create) await tx.run(monthPartitionDdl(p.year, p.month));
    return pruned;
  }

  async function writeBatch(
    batch: Batch,
    months: Set<string>,
    labels: ReturnType<typeof periodLabels>,
  ): Promise<{ inserted: number; expired: number }> {
    return rawTransaction(database, async (tx) => {
      const pruned = await ensureMonths(
        tx,
        [...months].filter((m) => !knownMonths.has(m)),
      );
      const events =
        pruned.size === 0
          ? batch
          : selectRows(batch, (i) => !pruned.has(labels(batch.t[i] ?? 0).month));
      const stored = rowCount(events) > 0 ? await storeNew(tx, events) : events;
      const rollups = aggregate(stored, labels);
      // Fixed table order and key-sorted rows: concurrent batches lock in the same order.
      if (rollups.totals.length > 0) await tx.run(upsertTotals(rollups.totals));
      if (rollups.hourly.length > 0)
        await tx.run(upsertPeriods('api_key_usage_hourly', rollups.hourly));
      if (rollups.daily.length > 0)
        await tx.run(upsertPeriods('api_key_usage_daily', rollups.daily));
      if (rollups.routes.length > 0) {
        const pairs = [...new Map(rollups.routes.map((r) => [`${r.keyId}|${r.day}`, r])).values()];
        const known = await tx.run(storedRoutes(pairs));
        await tx.run(upsertRoutes(capRoutes(rollups.routes, known, routeCap)));
      }
      await noticeUses(tx, stored);
      return { inserted: rowCount(stored), expired: rowCount(batch) - rowCount(events) };
    });
  }

  /**
   * The first instant kept, as prune sees it: an event is past retention when its whole month
   * ended before now − retention (prune drops whole months), so an event of a month still kept is
   * stored however late it comes. That is: before the start of the month holding now − retention.
   */
  function keptFrom(): number {
    if (options.retentionDays === undefined) return Number.NEGATIVE_INFINITY;
    const edge = new Date(now() - options.retentionDays * 86_400_000);
    return Date.UTC(edge.getUTCFullYear(), edge.getUTCMonth(), 1);
  }

  /** Ingests a batch in columns (the worker's path: its events never become objects). */
  async function ingestBatch(batch: Batch): Promise<IngestResult> {
    const received = rowCount(batch);
    if (received === 0) return { received: 0, inserted: 0, expired: 0 };
    const from = keptFrom();
    const current = selectRows(batch, (i) => (batch.t[i] ?? 0) >= from);
    const old = received - rowCount(current);
    if (rowCount(current) === 0) return { received, inserted: 0, expired: old };
    const labels = periodLabels();
    const months = new Set<string>();
    for (const t of current.t) months.add(labels(t).month);
    const result = await writeBatch(current, months, labels).catch((error: unknown) => {
      if (!isNoPartition(error)) throw error;
      knownMonths.clear();
      return writeBatch(current, months, labels);
    });
    for (const m of months) knownMonths.add(m);
    return { received, inserted: result.inserted, expired: old + result.expired };
  }

  /** Ingests events given as objects (tests, tools): the same path, through columns. */
  const ingest = (events: readonly UsageEvent[]): Promise<IngestResult> =>
    ingestBatch(encodePayload(events));

  return { ingest, ingestBatch };
}

export type Ingester = ReturnType<typeof createIngester>;
