/**
 * A batch of usage events in columns, the shape the queue carries them in (UsagePayload): the
 * worker ingests jobs without ever turning their events into objects. One object per event was
 * most of the worker's CPU (decoding, then garbage collection); the columns are checked once,
 * merged, filtered in the rare cases that drop rows, and read by index by the COPY encoder and
 * the aggregation.
 */
import type { UsagePayload } from './usage.jobs.ts';

export type Batch = UsagePayload;

export const rowCount = (b: Batch): number => b.id.length;

export function emptyBatch(): Batch {
  return {
    v: 1,
    keys: [],
    routes: [],
    agents: [],
    id: [],
    k: [],
    t: [],
    m: [],
    r: [],
    s: [],
    l: [],
    ip: [],
    ua: [],
    o: [],
  };
}

/** Adds values to a dictionary, returning each one's index (an existing one when seen before). */
export function indexIn(values: string[]): (value: string) => number {
  const index = new Map<string, number>();
  return (value: string): number => {
    let i = index.get(value);
    if (i === undefined) {
      i = values.length;
      values.push(value);
      index.set(value, i);
    }
    return i;
  };
}

/**
 * One batch of several payloads (the jobs of one fetch): the dictionaries merged, each column
 * concatenated with its indices remapped. Throws when two payloads give one key two orgs (no
 * producer of ours does): the caller then ingests each payload on its own.
 */
export function mergePayloads(payloads: readonly Batch[]): Batch {
  if (payloads.length === 1 && payloads[0]) return payloads[0];
  const out = emptyBatch();
  const keyIndex = new Map<string, number>();
  const route = indexIn(out.routes);
  const agent = indexIn(out.agents);
  const append = (to: number[], column: readonly number[], map: (i: number) => number) => {
    for (const i of column) to.push(map(i));
  };
  for (const p of payloads) {
    const keys = p.keys.map(([keyId, orgId]) => {
      let i = keyIndex.get(keyId);
      if (i === undefined) {
        i = out.keys.length;
        out.keys.push([keyId, orgId]);
        keyIndex.set(keyId, i);
      } else if (out.keys[i]?.[1] !== orgId) {
        throw new Error(`key ${keyId} comes with two orgs in one fetch`);
      }
      return i;
    });
    const routes = p.routes.map(route);
    const agents = p.agents.map(agent);
    append(out.k, p.k, (i) => keys[i] ?? 0);
    append(out.r, p.r, (i) => routes[i] ?? 0);
    append(out.ua, p.ua, (i) => (i < 0 ? -1 : (agents[i] ?? -1)));
  }
  // Columns without dictionary indices are concatenated as they are.
  const concat = <T>(column: (p: Batch) => T[]): T[] => ([] as T[]).concat(...payloads.map(column));
  return {
    ...out,
    id: concat((p) => p.id),
    t: concat((p) => p.t),
    m: concat((p) => p.m),
    s: concat((p) => p.s),
    l: concat((p) => p.l),
    ip: concat((p) => p.ip),
    o: concat((p) => p.o),
  };
}

/** The rows for which `keep` holds, same dictionaries; the batch itself when it keeps them all. */
export function selectRows(b: Batch, keep: (i: number) => boolean): Batch {
  const rows: number[] = [];
  for (let i = 0; i < b.id.length; i++) if (keep(i)) rows.push(i);
  if (rows.length === b.id.length) return b;
  const pick = <T>(column: T[]): T[] => rows.map((i) => column[i] as T);
  return {
    ...b,
    id: pick(b.id),
    k: pick(b.k),
    t: pick(b.t),
    m: pick(b.m),
    r: pick(b.r),
    s: pick(b.s),
    l: pick(b.l),
    ip: pick(b.ip),
    ua: pick(b.ua),
    o: pick(b.o),
  };
}

/**
 * An event's identity: (org, occurred_at, event_id), the primary key. Lower case: PostgreSQL
 * returns uuids in lower case, whatever case they were sent in.
 */
export const identity = (orgId: string, eventId: string, occurredAt: number): string =>
  `${orgId.toLowerCase()}|${eventId.toLowerCase()}|${occurredAt}`;
