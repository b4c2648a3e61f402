/**
 * The rate limiter's state per subject and policy, and the claim items it sends (pure: no I/O).
 * See rate-limiter.ts and docs/adr/0012 §2–§3.
 */
import type { RatePolicy } from './limits.types.ts';
import { windowStartOf } from './window.ts';

export type ClaimItem = {
  subject: string;
  policy: string;
  windowSeconds: number;
  windowStart: number;
  limit: number;
  /** Credit asked for. */
  want: number;
  /** Unspent credit given back (zeroed here before it is sent: never spent twice). */
  back: number;
  /** Admitted on this instance's own share while claims failed: charged, past any cap. */
  used: number;
};

export type ClaimGrant = {
  subject: string;
  policy: string;
  windowSeconds: number;
  windowStart: number;
  granted: number;
  /** Claimed by every instance for that window, after this grant. */
  claimed: number;
  /** False: the window is over (or too far ahead) on the database clock; nothing was done. */
  current: boolean;
};

export type ClaimResult = { grants: ClaimGrant[]; dbNow: number; instances: number };
export type Claimer = (items: readonly ClaimItem[]) => Promise<ClaimResult>;

export type PolicyState = {
  readonly name: string;
  readonly windowSeconds: number;
  readonly widthMs: number;
  limit: number;
  /** The window that credit, spent and claimed belong to. */
  start: number;
  credit: number;
  spent: number;
  /** Claimed by every instance for `start`, as last seen. */
  claimed: number;
  /** A claim for `start` got nothing: refused without waiting until a sync finds credit. */
  exhausted: boolean;
  /** Of `credit`, granted by this instance alone while claims failed (never given back). */
  localGranted: number;
  nextStart: number;
  nextCredit: number;
  nextClaimed: number;
  /** Requests that wanted this policy since the last sync. */
  demand: number;
  idleSyncs: number;
  lastGrant: number;
  /** A claim for the current window is in flight. */
  pending: Promise<void> | null;
  /** Requests waiting for that claim: what it asks for. */
  waiting: number;
};

export function newState(p: RatePolicy): PolicyState {
  return {
    name: p.name,
    windowSeconds: p.windowSeconds,
    widthMs: p.windowSeconds * 1000,
    limit: p.limit,
    start: 0,
    credit: 0,
    spent: 0,
    claimed: 0,
    exhausted: false,
    localGranted: 0,
    nextStart: 0,
    nextCredit: 0,
    nextClaimed: 0,
    demand: 0,
    idleSyncs: 0,
    lastGrant: 0,
    pending: null,
    waiting: 0,
  };
}

/**
 * Moves to the window of `now`; credit of a past window is worthless and dropped. A `now` in an
 * earlier window (the clock estimate corrected back: the instance ran ahead of the database)
 * moves back to it, and credit claimed for the window after keeps it as the next window's.
 */
export function roll(st: PolicyState, now: number): void {
  const ws = windowStartOf(now, st.widthMs);
  if (ws < st.start) {
    stepBack(st, ws);
    return;
  }
  if (ws === st.start) return;
  const next = ws === st.nextStart;
  st.start = ws;
  st.credit = next ? st.nextCredit : 0;
  st.claimed = next ? st.nextClaimed : 0;
  st.spent = 0;
  st.exhausted = false;
  st.localGranted = 0;
  st.nextStart = 0;
  st.nextCredit = 0;
  st.nextClaimed = 0;
}

function stepBack(st: PolicyState, ws: number): void {
  const ahead = st.start === ws + st.widthMs;
  st.nextStart = ahead ? st.start : 0;
  st.nextCredit = ahead ? st.credit - Math.min(st.credit, st.localGranted) : 0;
  st.nextClaimed = ahead ? st.claimed : 0;
  st.start = ws;
  st.credit = 0;
  st.claimed = 0;
  st.spent = 0;
  st.exhausted = false;
  st.localGranted = 0;
}

export function itemOf(
  subject: string,
  st: PolicyState,
  change: { want?: number; back?: number; used?: number; next?: boolean },
): ClaimItem {
  return {
    subject,
    policy: st.name,
    windowSeconds: st.windowSeconds,
    windowStart: change.next ? st.start + st.widthMs : st.start,
    limit: st.limit,
    want: change.want ?? 0,
    back: change.back ?? 0,
    used: change.used ?? 0,
  };
}

export const rowOf = (i: {
  subject: string;
  policy: string;
  windowSeconds: number;
  windowStart: number;
}): string => `${i.subject}|${i.policy}|${i.windowSeconds}|${i.windowStart}`;

/**
 * One item per row: Postgres refuses a statement whose ON CONFLICT touches a row twice, and a
 * batch may hold a return and a claim of one row (a reload's return beside a sync's claim).
 */
export function mergeItems(items: readonly ClaimItem[]): ClaimItem[] {
  const byRow = new Map<string, ClaimItem>();
  for (const item of items) {
    const row = rowOf(item);
    const seen = byRow.get(row);
    if (!seen) {
      byRow.set(row, { ...item });
      continue;
    }
    seen.want = Math.max(seen.want, item.want);
    seen.back += item.back;
    seen.used += item.used;
    seen.limit = item.limit;
  }
  return [...byRow.values()];
}

/**
 * Admissions made on local credit, and the local credit not spent, assuming the claimed credit
 * the state held went first.
 */
export function localUse(st: PolicyState): { spent: number; unspent: number } {
  const unspent = Math.min(st.credit, st.localGranted);
  return { spent: st.localGranted - unspent, unspent };
}
