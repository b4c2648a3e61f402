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
  insertEventsSkippingStored,
  upsertPeriods,
  upsertRoutes,
  upsertTotals,
} from './usage.queries.ts';
import type { UsageEvent } from './usage.types.ts';

/** `expired`: events older than the raw-event retention, dropped (their month may be pruned). */
export type IngestResult = { received: number; inserted: number; expired: number };

/** Distinct routes kept per key and UTC day in the per-route rollup (KEYTRAIL_MAX_ROUTES_PER_KEY_DAY). */
export const DEFAULT_ROUTES_PER_KEY_DAY = 200;

/** SQLSTATE of "no partition of relation … found for row". */
const NO_PARTITION = '23514';
/** SQLSTATE of a unique violation: an event of the batch is already stored. */
const UNIQUE_VIOLATION = '23505';

// An event's identity: (org, occurred_at, event_id), the primary key. Lower case: PostgreSQL
// returns uuids in lower case, whatever case they were sent in.
const eventKey = (e: { orgId: string; eventId: string; occurredAt: number }): string =>
  `${e.orgId.toLowerCase()}|${e.eventId.toLowerCase()}|${e.occurredAt}`;
const sqlState = (error: unknown): string | undefined => (error as { code?: string }).code;

/**
 * The batch without repeats of one event (same org, event_id and occurred_at; the first wins): a COPY
 * must not carry one row twice. Keyed by event_id (in any letter case) first, as repeats of an id
 * are rare.
 */
function distinct(events: readonly UsageEvent[]): UsageEvent[] {
  const first = new Map<string, number>(); // org|event_id → occurred_at of its first occurrence
  let others: Set<string> | undefined; // the same id at other times: other rows
  const out: UsageEvent[] = [];
  for (const e of events) {
    const id = `${e.orgId.toLowerCase()}|${e.eventId.toLowerCase()}`;
    const at = first.get(id);
    if (at === undefined) {
      first.set(id, e.occurredAt);
    } else {
      if (at === e.occurredAt) continue;
      others ??= new Set();
      const k = eventKey(e);
      if (others.has(k)) continue;
      others.add(k);
    }
    out.push(e);
  }
  return out;
}

/**
 * Stores the events not stored yet and returns them. The fast path is one COPY: a batch is
 * almost never a replay. If any row is already stored (a replayed job, a gateway retry, a racing
 * worker), the primary key makes the COPY fail as a whole; it is undone to its savepoint and the
 * batch goes through INSERT … ON CONFLICT DO NOTHING RETURNING instead, which skips stored rows,
 * waits for rows a racing transaction has not committed yet, and returns what it inserted.
 */
async function storeNew(tx: RawTransaction, events: UsageEvent[]): Promise<UsageEvent[]> {
  await tx.exec('savepoint store_events');
  try {
    await tx.copyIn(COPY_EVENTS, encodeEventsCopy(events));
    return events;
  } catch (error) {
    if (sqlState(error) !== UNIQUE_VIOLATION) throw error;
  }
  await tx.exec('rollback to savepoint store_events');
  const rows = await tx.run(insertEventsSkippingStored(events));
  const inserted = new Set(
    rows.map((r) =>
      eventKey({ orgId: r.org_id, eventId: r.event_id, occurredAt: r.occurred_at.getTime() }),
    ),
  );
  return events.filter((e) => inserted.has(eventKey(e)));
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
    batch: UsageEvent[],
    months: Set<string>,
    labels: ReturnType<typeof periodLabels>,
  ): Promise<{ inserted: number; expired: number }> {
    return rawTransaction(database, async (tx) => {
      const pruned = await ensureMonths(
        tx,
        [...months].filter((m) => !knownMonths.has(m)),
      );
      const events =
        pruned.size === 0 ? batch : batch.filter((e) => !pruned.has(labels(e.occurredAt).month));
      const stored = events.length > 0 ? await storeNew(tx, events) : [];
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
      return { inserted: stored.length, expired: batch.length - events.length };
    });
  }

  /**
   * Past retention, as prune sees it: the event's whole month ended before now − retention (prune
   * drops whole months), so an event of a month still kept is stored however late it comes.
   */
  function expired(e: UsageEvent): boolean {
    if (options.retentionDays === undefined) return false;
    const d = new Date(e.occurredAt);
    const monthEnd = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    return monthEnd <= now() - options.retentionDays * 86_400_000;
  }

  async function ingest(batch: readonly UsageEvent[]): Promise<IngestResult> {
    if (batch.length === 0) return { received: 0, inserted: 0, expired: 0 };
    const current = batch.filter((e) => !expired(e));
    const old = batch.length - current.length;
    if (current.length === 0) return { received: batch.length, inserted: 0, expired: old };
    const events = distinct(current);
    const labels = periodLabels();
    const months = new Set(events.map((e) => labels(e.occurredAt).month));
    const result = await writeBatch(events, months, labels).catch((error: unknown) => {
      if (sqlState(error) !== NO_PARTITION) throw error;
      knownMonths.clear();
      return writeBatch(events, months, labels);
    });
    for (const m of months) knownMonths.add(m);
    return { received: batch.length, inserted: result.inserted, expired: old + result.expired };
  }

  return { ingest };
}

export type Ingester = ReturnType<typeof createIngester>;
