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
 * waits: for one claim, batched with every other such request (one claim statement for misses
 * in flight at a time).
 *
 * Claims failing: for a moment (under `degradeAfterMs`) a request without credit gets
 * UNAVAILABLE (503). Past it the instance is degraded: each instance admits its share of each
 * window, the limit ÷ the instances last seen, on its own; when claims work again, what it
 * admitted that way is charged to the window, past any cap, so the others see it.
 */
import type { RateLimits } from './key-limits.ts';
import { rateLimitHeader } from './headers.ts';
import { secondsLeft } from './window.ts';
import {
  itemOf,
  localUse,
  mergeItems,
  newState,
  roll,
  type ClaimGrant,
  type ClaimItem,
  type ClaimResult,
  type Claimer,
  type PolicyState,
} from './rate-state.ts';

type Group = {
  /** The policies' identity by value (names, limits, windows): the `RateLimit-Policy` value. */
  key: string;
  states: PolicyState[];
  /** Per policy, refilled in place for the `RateLimit` field. */
  remaining: Float64Array;
  reset: Float64Array;
};

/** `decide`'s answers besides a refusing policy's index. */
export const ADMITTED = -1;
export const NEEDS_CREDIT = -2;
/** Claims fail and the instance is not degraded yet: no decision (503, retry in a second). */
export const UNAVAILABLE = -3;

export type RateLimiterStats = {
  admitted: number;
  refused: number;
  waits: number;
  statements: number;
  failures: number;
  /** Epoch ms of the last claim statement that succeeded (0: none yet). */
  lastSuccessAt: number;
  /** Claims have failed for `degradeAfterMs`: each instance decides on its own share. */
  degraded: boolean;
};

/** Syncs without demand before unspent credit goes back, and before a state is forgotten. */
const IDLE_RETURN_SYNCS = 2;
const IDLE_FORGET_SYNCS = 40;
/** Claims one request may wait for before it is refused for want of credit. */
const MAX_WAITS = 8;

export function createRateLimiter(options: {
  claim: Claimer;
  syncMs: number;
  now?: () => number;
  /** Claims failing this long make the instance degraded (default: 2 syncs, at least 1 s). */
  degradeAfterMs?: number;
  /** Called when a subject is first seen: the sync need only run once limits are in use. */
  onUse?: () => void;
}) {
  const clockNow = options.now ?? Date.now;
  const degradeAfterMs = options.degradeAfterMs ?? Math.max(1000, 2 * options.syncMs);
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
  let offsetKnown = false;
  /** An answer slower than this does not move the clock offset. */
  const slowAnswerMs = Math.max(1_000, 4 * options.syncMs);
  let instances = 1;
  /** When the current streak of failed claims began (0: claims work). */
  let failingSince = 0;
  /** Returns and charges owed by states a reload dropped or cut, sent with the next statement. */
  const owed: ClaimItem[] = [];
  let misses: { subject: string; st: PolicyState }[] = [];
  let missFlush: Promise<void> | null = null;
  let missInFlight: Promise<void> | null = null;

  /** Now on the database clock: every instance agrees on where windows start. */
  const now = () => Math.floor(clockNow() + offsetMs);
  const clampWant = (want: number, st: PolicyState) =>
    Math.max(1, Math.min(want, Math.ceil(st.limit / instances)));

  function groupOf(subject: string, rate: RateLimits): Group {
    const group = groups.get(subject);
    if (group && group.key === rate.headers.policy) return group;
    return rebuild(subject, rate, group);
  }

  /** New policies for a subject: a kept policy keeps its state; credit past a cut goes back. */
  function rebuild(subject: string, rate: RateLimits, old: Group | undefined): Group {
    const before = old?.states ?? [];
    const states = rate.policies.map((p) => {
      const kept = before.find((s) => s.name === p.name && s.windowSeconds === p.windowSeconds);
      if (!kept) return newState(p);
      if (p.limit < kept.limit) giveBack(subject, kept);
      // A new limit: what the window has left is to be asked again, not assumed spent.
      if (p.limit !== kept.limit) kept.exhausted = false;
      kept.limit = p.limit;
      return kept;
    });
    for (const s of before) if (!states.includes(s)) giveBack(subject, s);
    if (!old) options.onUse?.();
    const n = states.length;
    const group = {
      key: rate.headers.policy,
      states,
      remaining: new Float64Array(n),
      reset: new Float64Array(n),
    };
    groups.set(subject, group);
    return group;
  }

  /** Everything the state holds goes back (local credit is dropped, its use charged). */
  function giveBack(subject: string, st: PolicyState): void {
    const local = localUse(st);
    const claimed = st.credit - local.unspent;
    if (claimed > 0 || local.spent > 0) {
      owed.push(itemOf(subject, st, { back: claimed, used: local.spent }));
    }
    if (st.nextCredit > 0) owed.push(itemOf(subject, st, { back: st.nextCredit, next: true }));
    st.credit = 0;
    st.localGranted = 0;
    st.nextCredit = 0;
    st.nextStart = 0;
  }

  /**
   * The request path, synchronous, charging nothing: ADMITTED (every policy holds credit),
   * NEEDS_CREDIT (await `credit()`, then check again), or the index of a policy that refuses.
   */
  function check(subject: string, rate: RateLimits): number {
    const t = now();
    const { states } = groupOf(subject, rate);
    let result = ADMITTED;
    for (let i = 0; i < states.length; i += 1) {
      const st = states[i]!;
      roll(st, t);
      st.demand += 1;
      if (st.credit >= 1) continue;
      if (st.exhausted) return i;
      result = NEEDS_CREDIT;
    }
    return result;
  }

  /** Charges one to every policy: only after `check` said ADMITTED (and any quota agreed). */
  function charge(subject: string): void {
    const group = groups.get(subject);
    if (!group) return;
    for (let i = 0; i < group.states.length; i += 1) {
      const st = group.states[i]!;
      st.credit -= 1;
      st.spent += 1;
    }
  }

  /** `check`, then `charge` when every policy admits; counted in the stats. */
  function decide(subject: string, rate: RateLimits): number {
    const verdict = check(subject, rate);
    if (verdict === ADMITTED) {
      charge(subject);
      stats.admitted += 1;
    } else if (verdict >= 0) stats.refused += 1;
    return verdict;
  }

  /**
   * Claims credit for each policy of `subject` that has none, batched with other misses. While
   * degraded, grants this instance's own share at once (no claim: it would wait to fail).
   */
  function credit(subject: string, rate: RateLimits): Promise<unknown> {
    const { states } = groupOf(subject, rate);
    if (stats.degraded) {
      for (const st of states) if (st.credit < 1 && !st.exhausted) grantLocally(st);
      return Promise.resolve();
    }
    stats.waits += 1;
    const waits: Promise<void>[] = [];
    for (const st of states) {
      if (st.credit >= 1 || st.exhausted) continue;
      st.waiting += 1;
      if (!st.pending) {
        misses.push({ subject, st });
        const pending = scheduleMisses().finally(() => {
          if (st.pending === pending) st.pending = null;
        });
        st.pending = pending;
      }
      waits.push(st.pending);
    }
    return Promise.all(waits);
  }

  /** One miss statement in flight; the next collects every miss that arrived meanwhile. */
  function scheduleMisses(): Promise<void> {
    missFlush ??= (async () => {
      await (missInFlight ?? new Promise<void>((resolve) => setImmediate(resolve)));
      missFlush = null;
      const taken = misses;
      misses = [];
      missInFlight = send(
        taken.map(({ subject, st }) => {
          const first = Math.ceil(st.limit / (8 * instances));
          const want = clampWant(Math.max(st.waiting, st.lastGrant, first), st);
          st.waiting = 0;
          return itemOf(subject, st, { want });
        }),
      );
      await missInFlight;
      missInFlight = null;
    })();
    return missFlush;
  }

  async function send(items: ClaimItem[]): Promise<void> {
    const all = mergeItems([...owed.splice(0), ...items]);
    stats.statements += 1;
    let result: ClaimResult;
    const sentAt = clockNow();
    try {
      result = await options.claim(all);
    } catch {
      // Charges not made are owed still (sent twice they would only under-admit); returns are
      // not: a return that did reach Postgres, sent again, would hand out credit twice.
      for (const i of all) if (i.used > 0) owed.push({ ...i, want: 0, back: 0 });
      failed();
      return;
    }
    // dbNow is taken as the statement ends: the offset's error is the answer's way back. An
    // answer that took long (a stall, or one overtaken by later ones) would set this clock back
    // by that long, and a clock set back a window drops the next window's credit: only a quick
    // answer (or the first) moves it.
    const answeredAt = clockNow();
    if (!offsetKnown || answeredAt - sentAt <= slowAnswerMs) {
      offsetMs = result.dbNow - answeredAt;
      offsetKnown = true;
    }
    instances = Math.max(1, result.instances);
    stats.lastSuccessAt = clockNow();
    failingSince = 0;
    if (stats.degraded) owed.push(...recoveryCharges());
    stats.degraded = false;
    for (const g of result.grants) apply(g);
  }

  /** Back from degraded: local credit is dropped and what it admitted charged to its window. */
  function recoveryCharges(): ClaimItem[] {
    const items: ClaimItem[] = [];
    for (const [subject, group] of groups) {
      for (const st of group.states) {
        if (st.localGranted === 0) continue;
        const local = localUse(st);
        if (local.spent > 0) items.push(itemOf(subject, st, { used: local.spent }));
        st.credit -= local.unspent;
        st.localGranted = 0;
      }
    }
    return items;
  }

  function failed(): void {
    stats.failures += 1;
    const t = clockNow();
    if (failingSince === 0) failingSince = t;
    stats.degraded = t - failingSince >= degradeAfterMs;
  }

  function stateOf(item: { subject: string; policy: string; windowSeconds: number }) {
    return groups
      .get(item.subject)
      ?.states.find((s) => s.name === item.policy && s.windowSeconds === item.windowSeconds);
  }

  function apply(g: ClaimGrant): void {
    if (!g.current) return;
    const st = stateOf(g);
    if (!st) {
      // Its state is gone (a reload dropped it, or the instance is stopping): give it back.
      if (g.granted > 0) {
        owed.push({ ...g, limit: 0, want: 0, back: g.granted, used: 0 });
        void send([]);
      }
      return;
    }
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

  /** Degraded: this instance's share of the window, on its own count. */
  function grantLocally(st: PolicyState): void {
    const mine = Math.floor(st.limit / instances) - st.spent - st.credit;
    if (mine > 0) {
      st.credit += mine;
      st.localGranted += mine;
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
            items.push(itemOf(subject, st, { want: clampWant(2 * demand + 1, st) }));
          }
          // The window ends before the next sync: claim into the next one now, no wait then.
          if (st.start + st.widthMs <= soon && st.nextStart !== st.start + st.widthMs) {
            st.nextStart = st.start + st.widthMs;
            items.push(itemOf(subject, st, { want: clampWant(2 * demand + 1, st), next: true }));
          }
        } else if ((st.idleSyncs += 1) >= IDLE_RETURN_SYNCS && !stats.degraded) {
          const back = st.credit - localUse(st).unspent;
          if (back > 0) {
            items.push(itemOf(subject, st, { back }));
            st.credit -= back;
          }
        }
        // While degraded a state is kept whole: forgetting it would forget what it admitted.
        if (stats.degraded || st.credit > 0 || st.nextCredit > 0 || st.pending) live = true;
        if (st.idleSyncs < IDLE_FORGET_SYNCS) live = true;
      }
      if (!live) groups.delete(subject);
    }
    return items;
  }

  /** One sync: a statement even with nothing to claim (the heartbeat that counts instances). */
  const sync = (): Promise<void> => send(syncItems());

  /** Credit held for every policy of every subject, given back (a graceful stop). */
  async function releaseAll(): Promise<ClaimItem[]> {
    await missFlush;
    await missInFlight;
    for (const [subject, group] of groups) for (const st of group.states) giveBack(subject, st);
    groups.clear();
    return mergeItems(owed.splice(0));
  }

  /**
   * `decide`, waiting for credit when it must, then `done(ADMITTED)`, `done(UNAVAILABLE)` or
   * `done(index of a refusing policy)`. Synchronous when no wait is needed, so a request with
   * credit in hand is decided without a promise. Each wait ends with credit, with the window
   * known spent, or with claims failing; a request outrun by others for the credit that came
   * waits again, up to MAX_WAITS times, then is refused as if the window were spent.
   */
  function decideThen(
    subject: string,
    rate: RateLimits,
    done: (verdict: number) => void,
    attempt = 0,
  ): void {
    const verdict = decide(subject, rate);
    if (verdict !== NEEDS_CREDIT) return settle(done, verdict);
    if (attempt > 0 && failingSince !== 0 && !stats.degraded) return settle(done, UNAVAILABLE);
    if (attempt >= MAX_WAITS) {
      stats.refused += 1;
      const { states } = groupOf(subject, rate);
      return settle(
        done,
        Math.max(
          0,
          states.findIndex((st) => st.credit < 1),
        ),
      );
    }
    void credit(subject, rate).then(() => decideThen(subject, rate, done, attempt + 1));
  }

  /** A throw in the caller's callback must not become an unhandled rejection here. */
  function settle(done: (verdict: number) => void, verdict: number): void {
    try {
      done(verdict);
    } catch {
      // The caller's own failure (a response already gone); nothing of the limiter's.
    }
  }

  /**
   * The `RateLimit` field value for `subject`: per policy, what is left of the window (claimed
   * by nobody, plus this instance's unspent credit) and its seconds to go.
   */
  function header(subject: string, rate: RateLimits): string {
    const group = fill(subject, rate);
    return rateLimitHeader(rate.headers, group.remaining, group.reset);
  }

  /** Refills the group's remaining and reset figures for now: what `header` and `snapshot` read. */
  function fill(subject: string, rate: RateLimits): Group {
    const group = groupOf(subject, rate);
    const t = now();
    for (let i = 0; i < group.states.length; i += 1) {
      const st = group.states[i]!;
      roll(st, t);
      const left = Math.max(0, st.limit - st.claimed) + st.credit;
      group.remaining[i] = Math.min(st.limit, Math.max(0, Math.floor(left)));
      group.reset[i] = secondsLeft(st.start, st.widthMs, t);
    }
    return group;
  }

  /**
   * `Retry-After` for a refusal by policy `index`: the seconds until its window ends (≥ 1); 1
   * when the window is not known spent (refused after waiting: others held the credit).
   */
  function retryAfter(subject: string, rate: RateLimits, index: number): number {
    const st = groupOf(subject, rate).states[index];
    if (!st?.exhausted) return 1;
    return secondsLeft(st.start, st.widthMs, now());
  }

  /** Per policy: limit, remaining and seconds to reset (verify's `ratelimits`). */
  function snapshot(subject: string, rate: RateLimits) {
    const group = fill(subject, rate);
    return rate.policies.map((p, i) => ({
      name: p.name,
      limit: p.limit,
      remaining: group.remaining[i] ?? 0,
      reset_seconds: group.reset[i] ?? 1,
    }));
  }

  return {
    check,
    charge,
    decide,
    decideThen,
    /** Claims fail and the instance is not degraded yet: a request without credit gets 503. */
    get unsure() {
      return failingSince !== 0 && !stats.degraded;
    },
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
