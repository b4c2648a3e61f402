/**
 * Rate limits decided in process memory, exact across instances (docs/adr/0012 §2–§3).
 *
 * Each policy of each subject counts in fixed windows aligned to the database clock. An instance
 * admits a request only against credit: a part of the window's limit it claimed from Postgres
 * (`key_rate_claims`, where the claims of all instances never exceed the limit), so together the
 * instances never admit more than the limit in a window. Credit is claimed in chunks sized by
 * the instance's recent demand, ahead of need, by one batched statement per sync (`syncMs`);
 * unused credit goes back when the instance falls idle, so traffic that moves to another
 * instance finds it. Only a request that finds no credit, in a window not known to be spent,
 * waits: for one claim, batched with every other such request of that tick (the first request
 * of a window on an instance, or a key too sparse to claim ahead for).
 *
 * Degraded (the claim statement fails): each instance admits its share of each window, the
 * limit ÷ the instances last seen, on its own count.
 */
import type { RateLimits } from './key-limits.ts';
import type { RatePolicy } from './limits.types.ts';
import { rateLimitHeader } from './headers.ts';
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
};
export type ClaimGrant = {
  subject: string;
  policy: string;
  windowSeconds: number;
  windowStart: number;
  granted: number;
  /** Claimed by every instance for that window, after this grant. */
  claimed: number;
};
export type ClaimResult = { grants: ClaimGrant[]; dbNow: number; instances: number };
export type Claimer = (items: readonly ClaimItem[]) => Promise<ClaimResult>;

type PolicyState = {
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
  /** Credit this instance granted itself (Postgres unreachable): never given back. */
  local: boolean;
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

type Group = {
  policies: readonly RatePolicy[];
  states: PolicyState[];
  /** Per policy, refilled in place for the `RateLimit` field. */
  remaining: Float64Array;
  reset: Float64Array;
};

/** `decide`'s answers besides a refusing policy's index. */
export const ADMITTED = -1;
export const NEEDS_CREDIT = -2;

export type RateLimiterStats = {
  admitted: number;
  refused: number;
  waits: number;
  statements: number;
  failures: number;
  /** Epoch ms of the last claim statement that succeeded (0: none yet). */
  lastSuccessAt: number;
  /** The last claim statement failed: this instance decides on its own share. */
  degraded: boolean;
};

/** Syncs without demand before unspent credit goes back, and before a state is forgotten. */
const IDLE_RETURN_SYNCS = 2;
const IDLE_FORGET_SYNCS = 40;
/** Claims one request may wait for before it is refused for want of credit. */
const MAX_WAITS = 8;

function newState(p: RatePolicy): PolicyState {
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
    local: false,
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

/** Moves to the window of `now`; credit of a past window is worthless and dropped. */
function roll(st: PolicyState, now: number): void {
  const ws = windowStartOf(now, st.widthMs);
  if (ws <= st.start) return;
  const next = ws === st.nextStart;
  st.start = ws;
  st.credit = next ? st.nextCredit : 0;
  st.claimed = next ? st.nextClaimed : 0;
  st.spent = 0;
  st.exhausted = false;
  st.local = false;
  st.nextStart = 0;
  st.nextCredit = 0;
  st.nextClaimed = 0;
}

const itemOf = (subject: string, st: PolicyState, want: number, back: number, next = false) => ({
  subject,
  policy: st.name,
  windowSeconds: st.windowSeconds,
  windowStart: next ? st.start + st.widthMs : st.start,
  limit: st.limit,
  want,
  back,
});

export function createRateLimiter(options: {
  claim: Claimer;
  syncMs: number;
  now?: () => number;
  /** Called when a subject is first seen: the sync need only run once limits are in use. */
  onUse?: () => void;
}) {
  const clockNow = options.now ?? Date.now;
  const groups = new Map<string, Group>();
  const stats: RateLimiterStats = {
    admitted: 0,
    refused: 0,
    waits: 0,
    statements: 0,
    failures: 0,
    lastSuccessAt: 0,
    degraded: false,
  };
  let offsetMs = 0;
  let instances = 1;
  /** Credit of states dropped by a reload (their policy changed), owed back. */
  let owed: ClaimItem[] = [];
  let misses: { subject: string; st: PolicyState }[] = [];
  let missFlush: Promise<void> | null = null;

  /** Now on the database clock: every instance agrees on where windows start. */
  const now = () => Math.floor(clockNow() + offsetMs);
  const clampWant = (want: number, st: PolicyState) =>
    Math.max(1, Math.min(want, Math.ceil(st.limit / instances)));

  function groupOf(subject: string, rate: RateLimits): Group {
    let group = groups.get(subject);
    if (group && group.policies === rate.policies) return group;
    const old = group?.states ?? [];
    const states = rate.policies.map((p) => {
      const kept = old.find((s) => s.name === p.name && s.windowSeconds === p.windowSeconds);
      if (!kept) return newState(p);
      // A new limit: what the window had left is to be asked again, not assumed spent.
      if (kept.limit !== p.limit) kept.exhausted = false;
      kept.limit = p.limit;
      return kept;
    });
    for (const s of old) {
      if (states.includes(s) || s.local || s.credit <= 0) continue;
      owed.push(itemOf(subject, s, 0, s.credit));
      s.credit = 0;
    }
    if (!group) options.onUse?.();
    const n = states.length;
    group = {
      policies: rate.policies,
      states,
      remaining: new Float64Array(n),
      reset: new Float64Array(n),
    };
    groups.set(subject, group);
    return group;
  }

  /**
   * The request path, synchronous: ADMITTED (every policy charged one), NEEDS_CREDIT (await
   * `credit()`, then decide again), or the index of a policy that refuses. A refused request
   * charges nothing.
   */
  function decide(subject: string, rate: RateLimits): number {
    const t = now();
    const { states } = groupOf(subject, rate);
    let result = ADMITTED;
    for (let i = 0; i < states.length; i += 1) {
      const st = states[i]!;
      roll(st, t);
      st.demand += 1;
      if (st.credit >= 1) continue;
      if (st.exhausted) {
        stats.refused += 1;
        return i;
      }
      result = NEEDS_CREDIT;
    }
    if (result === NEEDS_CREDIT) return result;
    for (let i = 0; i < states.length; i += 1) {
      const st = states[i]!;
      st.credit -= 1;
      st.spent += 1;
    }
    stats.admitted += 1;
    return ADMITTED;
  }

  /** Claims credit for each policy of `subject` that has none, batched with this tick's others. */
  function credit(subject: string, rate: RateLimits): Promise<unknown> {
    const { states } = groupOf(subject, rate);
    stats.waits += 1;
    const waits: Promise<void>[] = [];
    for (const st of states) {
      if (st.credit >= 1 || st.exhausted) continue;
      st.waiting += 1;
      if (!st.pending) {
        misses.push({ subject, st });
        missFlush ??= new Promise<void>((resolve) => setImmediate(resolve)).then(flushMisses);
        const pending = missFlush.finally(() => {
          if (st.pending === pending) st.pending = null;
        });
        st.pending = pending;
      }
      waits.push(st.pending);
    }
    return Promise.all(waits);
  }

  function flushMisses(): Promise<void> {
    const taken = misses;
    misses = [];
    missFlush = null;
    return send(
      taken.map(({ subject, st }) => {
        const first = Math.ceil(st.limit / (8 * instances));
        const want = clampWant(Math.max(st.waiting, st.lastGrant, first), st);
        st.waiting = 0;
        return itemOf(subject, st, want, 0);
      }),
    );
  }

  async function send(items: ClaimItem[]): Promise<void> {
    const all = owed.length > 0 ? [...owed, ...items] : items;
    owed = [];
    const sentAt = clockNow();
    stats.statements += 1;
    let result: ClaimResult;
    try {
      result = await options.claim(all);
    } catch {
      stats.failures += 1;
      stats.degraded = true;
      for (const item of items) if (item.want > 0) grantLocally(item);
      return;
    }
    const receivedAt = clockNow();
    offsetMs = result.dbNow - (sentAt + receivedAt) / 2;
    instances = Math.max(1, result.instances);
    stats.lastSuccessAt = receivedAt;
    stats.degraded = false;
    for (const g of result.grants) apply(g);
  }

  function stateOf(item: { subject: string; policy: string; windowSeconds: number }) {
    return groups
      .get(item.subject)
      ?.states.find((s) => s.name === item.policy && s.windowSeconds === item.windowSeconds);
  }

  function apply(g: ClaimGrant): void {
    const st = stateOf(g);
    if (!st) return;
    roll(st, now());
    if (g.windowStart === st.start) {
      st.credit += g.granted;
      st.claimed = Math.max(st.claimed, g.claimed);
      if (g.granted > 0) st.lastGrant = g.granted;
      st.exhausted = st.credit < 1 && g.claimed >= st.limit;
    } else if (g.windowStart === st.start + st.widthMs) {
      st.nextStart = g.windowStart;
      st.nextCredit += g.granted;
      st.nextClaimed = Math.max(st.nextClaimed, g.claimed);
    }
  }

  /** Postgres unreachable: this instance's share of the window, on its own count. */
  function grantLocally(item: ClaimItem): void {
    const st = stateOf(item);
    if (!st || item.windowStart !== st.start) return;
    const mine = Math.floor(st.limit / instances) - st.spent - st.credit;
    if (mine > 0) {
      st.credit += mine;
      st.local = true;
    }
    st.exhausted = st.credit < 1;
  }

  /** What each state asks or gives back at a sync; forgets states idle for long. */
  function syncItems(): ClaimItem[] {
    const t = now();
    const items: ClaimItem[] = [];
    const soon = t + 1.5 * options.syncMs;
    for (const [subject, group] of groups) {
      let live = false;
      for (const st of group.states) {
        roll(st, t);
        const demand = st.demand;
        st.demand = 0;
        if (demand > 0) {
          st.idleSyncs = 0;
          const low = st.credit < Math.max(1, st.lastGrant / 2);
          if (!st.pending && (st.exhausted || low)) {
            items.push(itemOf(subject, st, clampWant(2 * demand + 1, st), 0));
          }
          // The window ends before the next sync: claim into the next one now, no wait then.
          if (st.start + st.widthMs <= soon && st.nextStart !== st.start + st.widthMs) {
            st.nextStart = st.start + st.widthMs;
            items.push(itemOf(subject, st, clampWant(2 * demand + 1, st), 0, true));
          }
        } else if ((st.idleSyncs += 1) >= IDLE_RETURN_SYNCS && st.credit > 0 && !st.local) {
          items.push(itemOf(subject, st, 0, st.credit));
          st.credit = 0;
        }
        if (st.credit > 0 || st.nextCredit > 0 || st.pending || st.idleSyncs < IDLE_FORGET_SYNCS) {
          live = true;
        }
      }
      if (!live) groups.delete(subject);
    }
    return items;
  }

  /** One sync: a statement even with nothing to claim (the heartbeat that counts instances). */
  const sync = (): Promise<void> => send(syncItems());

  /** Credit held for every policy of every subject, given back (a graceful stop). */
  function releaseAll(): ClaimItem[] {
    const items: ClaimItem[] = [];
    for (const [subject, group] of groups) {
      for (const st of group.states) {
        if (st.credit > 0 && !st.local) items.push(itemOf(subject, st, 0, st.credit));
        if (st.nextCredit > 0) items.push(itemOf(subject, st, 0, st.nextCredit, true));
        st.credit = 0;
        st.nextCredit = 0;
      }
    }
    groups.clear();
    return [...owed.splice(0), ...items];
  }

  /**
   * The `RateLimit` field value for `subject` as of its last decision: per policy, what is left
   * of the window (claimed by nobody, plus this instance's unspent credit) and its seconds to go.
   */
  function header(subject: string, rate: RateLimits): string {
    const group = groupOf(subject, rate);
    const t = now();
    for (let i = 0; i < group.states.length; i += 1) {
      const st = group.states[i]!;
      const left = Math.max(0, st.limit - st.claimed) + st.credit;
      group.remaining[i] = Math.min(st.limit, Math.max(0, Math.floor(left)));
      group.reset[i] = Math.max(1, Math.ceil((st.start + st.widthMs - t) / 1000));
    }
    return rateLimitHeader(rate.headers, group.remaining, group.reset);
  }

  /**
   * `decide`, waiting for credit when it must, then `done(ADMITTED)` or `done(index of a
   * refusing policy)`. Synchronous when no wait is needed, so a request with credit in hand is
   * decided without a promise. Each wait ends with credit or with the window known spent; a
   * request outrun by others for the credit that came waits again, up to MAX_WAITS times.
   */
  function decideThen(
    subject: string,
    rate: RateLimits,
    done: (verdict: number) => void,
    attempt = 0,
  ): void {
    const verdict = decide(subject, rate);
    if (verdict !== NEEDS_CREDIT) {
      done(verdict);
      return;
    }
    if (attempt >= MAX_WAITS) {
      stats.refused += 1;
      const { states } = groupOf(subject, rate);
      done(
        Math.max(
          0,
          states.findIndex((st) => st.credit < 1),
        ),
      );
      return;
    }
    void credit(subject, rate).then(() => decideThen(subject, rate, done, attempt + 1));
  }

  /** Seconds until policy `index` of `subject` starts a new window (≥ 1): `Retry-After`. */
  function retryAfter(subject: string, rate: RateLimits, index: number): number {
    const st = groupOf(subject, rate).states[index];
    if (!st) return 1;
    return Math.max(1, Math.ceil((st.start + st.widthMs - now()) / 1000));
  }

  /** Per policy: limit, remaining and seconds to reset (verify's `ratelimits`). */
  function snapshot(subject: string, rate: RateLimits) {
    header(subject, rate);
    const group = groupOf(subject, rate);
    return rate.policies.map((p, i) => ({
      name: p.name,
      limit: p.limit,
      remaining: group.remaining[i] ?? 0,
      reset_seconds: group.reset[i] ?? 1,
    }));
  }

  return {
    decide,
    decideThen,
    credit,
    header,
    retryAfter,
    snapshot,
    sync,
    send,
    releaseAll,
    now,
    stats,
    get instances() {
      return instances;
    },
    get size() {
      return groups.size;
    },
  };
}

export type RateLimiter = ReturnType<typeof createRateLimiter>;
