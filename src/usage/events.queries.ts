import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { DB } from '../../db/schema.ts';
import { CLOSED_AFTER_MS } from './usage.service.ts';

type Db = Kysely<DB>;

export type EventRow = {
  event_id: string;
  key_id: string;
  occurred_at: Date;
  method: string;
  route: string;
  status: number;
  latency_ms: number;
  ip: string | null;
  user_agent: string | null;
  outcome: string;
};

const EVENT_COLUMNS = [
  'event_id',
  'key_id',
  'occurred_at',
  'method',
  'route',
  'status',
  'latency_ms',
  sql<string | null>`host(ip)`.as('ip'),
  'user_agent',
  'outcome',
] as const;

export type EventFilter = {
  orgId: string;
  from: Date;
  to: Date;
  keyId?: string | undefined;
  status?: { exact: number } | { min: number; max: number } | undefined;
  method?: string | undefined;
  route?: string | undefined;
  outcome?: string | undefined;
};

export type EventCursor = { occurredAt: Date; eventId: string };

/**
 * One keyset page in (occurred_at, event_id) order. The org index
 * (org_id, occurred_at, event_id) serves the order and the cursor; the occurred_at range prunes
 * partitions. Exports call this repeatedly: constant memory, no long-running cursor transaction.
 */
export async function eventsPage(
  db: Db,
  f: EventFilter,
  after: EventCursor | undefined,
  limit: number,
): Promise<EventRow[]> {
  let q = db
    .selectFrom('api_key_usage_events')
    .select(EVENT_COLUMNS)
    .where('org_id', '=', f.orgId)
    .where('occurred_at', '>=', f.from)
    .where('occurred_at', '<', f.to);
  if (after) {
    q = q.where(
      sql<boolean>`(occurred_at, event_id) > (${after.occurredAt}, ${after.eventId}::uuid)`,
    );
  }
  if (f.keyId) q = q.where('key_id', '=', f.keyId);
  if (f.status && 'exact' in f.status) q = q.where('status', '=', f.status.exact);
  if (f.status && 'min' in f.status)
    q = q.where('status', '>=', f.status.min).where('status', '<=', f.status.max);
  if (f.method) q = q.where('method', '=', f.method);
  if (f.route) q = q.where('route', '=', f.route);
  if (f.outcome) q = q.where('outcome', '=', f.outcome);
  return q.orderBy('occurred_at').orderBy('event_id').limit(limit).execute();
}

/**
 * A key's latest events, newest first. The last CLOSED_AFTER_MS first: rows that recent are
 * never in a compressed (columnar) month, where each partition's ordered index scan costs a
 * chunk's decompression even when it gives nothing; only a key quiet that long reads further back.
 */
export async function recentEvents(
  db: Db,
  orgId: string,
  keyId: string,
  limit: number,
  now: Date,
): Promise<EventRow[]> {
  const since = new Date(now.getTime() - CLOSED_AFTER_MS);
  const latest = (bound: 'recent' | 'older', n: number) =>
    db
      .selectFrom('api_key_usage_events')
      .select(EVENT_COLUMNS)
      .where('org_id', '=', orgId)
      .where('key_id', '=', keyId)
      .where('occurred_at', bound === 'recent' ? '>=' : '<', since)
      .orderBy('occurred_at', 'desc')
      .orderBy('event_id', 'desc')
      .limit(n)
      .execute();
  const recent = await latest('recent', limit);
  if (recent.length >= limit) return recent;
  return [...recent, ...(await latest('older', limit - recent.length))];
}

const lit = (v: string | number): string =>
  typeof v === 'number' ? String(v) : pg.escapeLiteral(v);

/**
 * A text cell a spreadsheet would run as a formula (`=HYPERLINK(…)`, `+`, `-`, `@`, tab, CR)
 * gets a leading `'` (OWASP's CSV injection advice). Only the free-text columns can start so:
 * routes always start with `/`, the other columns are uuids, numbers, enums and addresses.
 */
const csvText = (column: string): string =>
  `case when left(e.${column}, 1) in ('=', '+', '-', '@', chr(9), chr(13))
      then '''' || e.${column} else e.${column} end`;

/**
 * The CSV export's query. COPY takes no bind parameters, so every value is a literal escaped by
 * pg.escapeLiteral (and already validated: uuids, times, enums, a method). Columns and formats
 * match the JSON events (ISO times in UTC, host(ip)). The order names the table's columns
 * (`e.occurred_at`): unqualified, `occurred_at` would mean the to_char output column, and
 * Postgres would sort the whole range before sending a byte instead of reading the index in order.
 */
export function eventsCsvSelect(f: EventFilter): string {
  const where = [
    `e.org_id = ${lit(f.orgId)}`,
    `e.occurred_at >= ${lit(f.from.toISOString())}::timestamptz`,
    `e.occurred_at < ${lit(f.to.toISOString())}::timestamptz`,
  ];
  if (f.keyId) where.push(`e.key_id = ${lit(f.keyId)}`);
  if (f.status && 'exact' in f.status) where.push(`e.status = ${lit(f.status.exact)}`);
  if (f.status && 'min' in f.status)
    where.push(`e.status between ${lit(f.status.min)} and ${lit(f.status.max)}`);
  if (f.method) where.push(`e.method = ${lit(f.method)}`);
  if (f.route) where.push(`e.route = ${lit(f.route)}`);
  if (f.outcome) where.push(`e.outcome = ${lit(f.outcome)}`);
  return `select e.event_id, e.key_id,
      to_char(e.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as occurred_at,
      e.method, ${csvText('route')} as route, e.status, e.latency_ms, host(e.ip) as ip,
      ${csvText('user_agent')} as user_agent, e.outcome
    from api_key_usage_events e
    where ${where.join(' and ')}
    order by e.occurred_at, e.event_id`;
}

/** The CSV export as one COPY statement (see eventsCsvSelect). */
export function eventsCsvCopy(f: EventFilter): string {
  return `copy (${eventsCsvSelect(f)}) to stdout with (format csv, header true)`;
}
