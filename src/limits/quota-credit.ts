/**
 * Quotas decided in process memory, never over-admitted (docs/adr/0012 §4). An instance spends
 * only credit it took from the quota's pool (`takeQuota`: atomically, in chunks sized by its
 * demand, batched for every subject of a tick); its lease's `held` is reported down as it spends
 * and its unspent credit goes back when it falls idle or stops (a return Postgres refused keeps
 * it here, for a later sync). A crash strands the credit held then (never handed out twice). Credit of a refill period dies at the period's end; credit of a
 * voided lease (a PATCH of `remaining`) dies with the next key reload.
 *
 * Takes failing: a request without credit gets UNAVAILABLE (503), or, with fail-open, is admitted
 * and its cost debited from the pool once takes work again. Failing closed, one request at a
 * time probes: when no take failed for PROBE_MS and no probe is running, a request that needs
 * credit tries a take (and waits for it); every other request is answered at once. An outage's
 * end is noticed by the next request, not by the next sync that happens to take, and a failing
 * Postgres gets one probe at a time, not one per request.
 */
import type { ReportItem, Take } from './quota.queries.ts';
import { secondsUntil } from './window.ts';

export type QuotaLimits = { readonly generation: number };

export type QuotaStore = {
  take(items: readonly { subject: string; want: number }[]): Promise<Take[]>;
  /** Returns the subjects whose lease took the report (a take since then refuses it). */
  report(items: readonly ReportItem[]): Promise<string[]>;
  /**
   * Gives unspent credit back. Rejects with `NotApplied` when the statement surely changed
   * nothing (the credit is still this instance's); any other failure may have returned it.
   */
  giveBack(items: readonly GiveBack[]): Promise<void>;
  debit(items: readonly { subject: string; amount: number }[]): Promise<void>;
  /**
   * Quotas this instance just reported spending on and now sees under 10 % (its own view: the
   * pool as of its last take, plus what it holds). The store checks them against the database:
   * the report that shows a quota low can come after its last use's ingest.
   */
  low?(subjects: readonly string[]): Promise<void>;
};

export type GiveBack = {
  subject: string;
  back: number;
  generation: number;
  periodStart: Date | null;
};

/**
 * A store's statement that surely changed nothing: the server refused it (a statement timeout, a
 * deadlock), so its transaction rolled back, or it was never sent. Not a lost connection: the
 * statement may have committed before it broke.
 */
export class NotApplied extends Error {
  override name = 'NotApplied';
}

type QuotaState = {
  held: number;
  generation: number;
  periodStart: Date | null;
  /** Epoch ms (database clock) when the held credit's period ends. */
  periodEnd: number;
  seq: number;
  /** A take got nothing: refused without waiting until a sync finds credit. */
  exhausted: boolean;
  /** Pool and limit as of the last take (verify's estimate of what remains). */
  pool: number;
  limit: number;
  lastTake: number;
  demand: number;
  waiting: number;
  idleSyncs: number;
  /** Fail-open admissions not yet debited from the pool. */
  owed: number;
  /** The compiled quota last seen: a new one (a key reload after a change) asks again. */
  config: QuotaLimits;
  reported: number;
  pending: Promise<void> | null;
};

export const QUOTA_OK = -1;
export const QUOTA_NEEDS_CREDIT = -2;
export const QUOTA_UNAVAILABLE = -3;
export const QUOTA_REFUSED = 0;

/** While takes fail, a request without credit tries a take if none failed for this long. */
export const PROBE_MS = 250;
/** A probe not settled by then (its take was never sent) no longer holds others back. */
const PROBE_EXPIRES_MS = 10_000;
const IDLE_RETURN_SYNCS = 4;
const IDLE_FORGET_SYNCS = 40;
/** At most this much credit per take: a crash strands no more than this per instance. */
const MAX_CHUNK = 1000;

/**
 * Credit of a refill period is dropped this long before the period ends on this instance's
 * estimate of the database clock, which lags the database by an answer's way back: credit of
 * an old period is never spent once the database has refilled.
 */
const PERIOD_MARGIN_MS = 1000;

function expire(st: QuotaState): void {
  st.held = 0;
  st.exhausted = false;
  st.periodEnd = Number.POSITIVE_INFINITY;
}

const samePeriod = (a: Date | null, b: Date | null): boolean =>
  (a?.getTime() ?? null) === (b?.getTime() ?? null);

const periodEndOf = (start: Date | null, refill: 'day' | 'month' | null): number => {
  if (!start || !refill) return Number.POSITIVE_INFINITY;
  if (refill === 'day') return start.getTime() + 86_400_000;
  return Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1);
};

export function createQuotaCredit(options: {
  store: QuotaStore;
  /** The database clock (the rate limiter's). */
  now: () => number;
  failOpen: boolean;
}) {
  const { store, now, failOpen } = options;
  const states = new Map<string, QuotaState>();
  const stats = { takes: 0, takeFailures: 0, failOpen: 0, taken: 0 };
  let failing = false;
  /** When the last take failed (Date.now()): while failing, probes are this far apart. */
  let failedAt = 0;
  /** When the probe running started (0: none): one probe at a time. */
  let probingSince = 0;

  /** Failing: answered at once (fail-open admits; fail-closed refuses) unless it may probe. */
  function whileFailing(): number {
    const now = Date.now();
    const probing = probingSince !== 0 && now - probingSince < PROBE_EXPIRES_MS;
    if (failOpen || probing || now - failedAt < PROBE_MS) {
      return failOpen ? QUOTA_OK : QUOTA_UNAVAILABLE;
    }
    probingSince = now;
    return QUOTA_NEEDS_CREDIT;
  }
  let misses: { subject: string; st: QuotaState }[] = [];
  let flush: Promise<void> | null = null;
  let taking: Promise<void> | null = null;

  function stateOf(subject: string, quota: QuotaLimits): QuotaState {
    let st = states.get(subject);
    if (!st) {
      st = {
        held: 0,
        generation: quota.generation,
        periodStart: null,
        periodEnd: Number.POSITIVE_INFINITY,
        seq: 0,
        exhausted: false,
        pool: 0,
        limit: 0,
        lastTake: 0,
        demand: 0,
        waiting: 0,
        idleSyncs: 0,
        owed: 0,
        reported: 0,
        pending: null,
        config: quota,
      };
      states.set(subject, st);
    }
    if (quota !== st.config) {
      st.config = quota;
      st.exhausted = false;
    }
    // A PATCH of `remaining` voided the leases: what this instance held is gone.
    if (quota.generation > st.generation) {
      st.generation = quota.generation;
      st.held = 0;
      st.reported = 0;
      st.exhausted = false;
    }
    if (now() >= st.periodEnd - PERIOD_MARGIN_MS) expire(st);
    return st;
  }

  /** Synchronous: QUOTA_OK (may charge), QUOTA_NEEDS_CREDIT, QUOTA_UNAVAILABLE or QUOTA_REFUSED. */
  function check(subject: string, quota: QuotaLimits, cost: number): number {
    const st = stateOf(subject, quota);
    st.demand += cost;
    if (st.held >= cost) return QUOTA_OK;
    if (st.exhausted) return QUOTA_REFUSED;
    return failing ? whileFailing() : QUOTA_NEEDS_CREDIT;
  }

  function charge(subject: string, cost: number): void {
    const st = states.get(subject);
    if (!st || cost === 0) return;
    if (st.held >= cost) st.held -= cost;
    else {
      // Fail-open: admitted without credit, debited once takes work again.
      st.owed += cost - st.held;
      st.held = 0;
      stats.failOpen += 1;
    }
  }

  /** Takes credit for `subject` (batched with this tick's other misses). */
  function credit(subject: string, quota: QuotaLimits, cost: number): Promise<void> {
    const st = stateOf(subject, quota);
    st.waiting += Math.max(1, cost);
    if (!st.pending) {
      misses.push({ subject, st });
      flush ??= new Promise<void>((resolve) => setImmediate(resolve)).then(takeMisses);
      const pending = flush.finally(() => {
        if (st.pending === pending) st.pending = null;
      });
      st.pending = pending;
    }
    return st.pending;
  }

  async function takeMisses(): Promise<void> {
    const taken = misses;
    misses = [];
    flush = null;
    const work = take(
      taken.map(({ subject, st }) => {
        const want = chunk(st, st.waiting);
        st.waiting = 0;
        return { subject, want };
      }),
    );
    taking = work;
    await work;
    if (taking === work) taking = null;
  }

  /** What to take: the demand seen, at least `need`, at most a 16th of the pool and MAX_CHUNK. */
  function chunk(st: QuotaState, need: number): number {
    const cap = Math.max(need, Math.min(MAX_CHUNK, Math.floor(st.pool / 16)));
    return Math.max(need, Math.min(cap, 2 * st.demand + 1));
  }

  async function take(items: { subject: string; want: number }[]): Promise<void> {
    if (items.length === 0) return;
    stats.takes += 1;
    let takes: Take[];
    try {
      takes = await store.take(items);
    } catch {
      stats.takeFailures += 1;
      failing = true;
      failedAt = Date.now();
      return;
    } finally {
      probingSince = 0;
    }
    failing = false;
    const answered = new Set<string>();
    for (const t of takes) {
      answered.add(t.subject);
      apply(t);
    }
    // No row: the quota was removed meanwhile (the key's next reload drops it).
    for (const { subject } of items) if (!answered.has(subject)) states.delete(subject);
  }

  function apply(t: Take): void {
    const st = states.get(t.subject);
    // A take answered under a generation older than the key's (a PATCH voided its lease while
    // the take was on its way): its credit is void, never spent.
    if (!st || t.generation < st.generation) return;
    // `reported` follows the lease's `held` in the database: a take adds its credit to both
    // (a new generation or period starts the lease again). Left behind, a take followed by as
    // many uses would leave held === reported, no report, and the lease (and so the quota's
    // remaining, and key.quota_low) too high until the next use.
    if (t.generation > st.generation) {
      st.generation = t.generation;
      st.held = 0;
      st.reported = 0;
    }
    if (!samePeriod(st.periodStart, t.periodStart)) {
      st.held = 0;
      st.reported = 0;
    }
    st.periodStart = t.periodStart;
    st.periodEnd = periodEndOf(t.periodStart, t.refill);
    st.held += t.got;
    st.reported += t.got;
    st.seq = t.seq;
    st.pool = t.pool;
    st.limit = t.limit;
    stats.taken += t.got;
    if (t.got > 0) st.lastTake = t.got;
    st.exhausted = t.got === 0 && t.pool === 0;
  }

  /** At a sync: report held down, take ahead for busy subjects, give back idle credit. */
  async function sync(): Promise<void> {
    const reports: (ReportItem & { was: number })[] = [];
    const backs: (GiveBack & { reported: number })[] = [];
    const debits: { subject: string; amount: number }[] = [];
    const ahead: { subject: string; want: number }[] = [];
    const low: string[] = [];
    const t = now();
    for (const [subject, st] of states) {
      // Credit of an ended period is dropped, not spent: never a sign of a low quota.
      const ended = t >= st.periodEnd - PERIOD_MARGIN_MS;
      if (ended) expire(st);
      const demand = st.demand;
      st.demand = 0;
      if (st.owed > 0 && !failing) {
        debits.push({ subject, amount: st.owed });
        st.owed = 0;
      }
      if (demand > 0) {
        st.idleSyncs = 0;
        // An exhausted state asks again for one: another instance may have given some back.
        if (!st.pending && (st.exhausted || st.held < Math.max(1, st.lastTake / 2))) {
          ahead.push({ subject, want: st.exhausted ? 1 : chunk(st, 1) });
        }
      } else if ((st.idleSyncs += 1) >= IDLE_RETURN_SYNCS && st.held > 0 && !failing) {
        // Given back, not reported: the return takes it off the lease (a report of 0 first
        // would leave the return nothing to give).
        backs.push(backOf(subject, st));
        continue;
      }
      if (st.held !== st.reported && st.seq > 0) {
        reports.push(reportOf(subject, st));
        if (demand > 0 && !ended && (st.pool + st.held) * 10 < st.limit) low.push(subject);
      }
      if (st.idleSyncs >= IDLE_FORGET_SYNCS && st.held === 0 && st.owed === 0 && !st.pending) {
        states.delete(subject);
      }
    }
    await giveBack(backs);
    await report(reports);
    if (low.length > 0 && store.low) await settle(store.low(low));
    await settle(store.debit(debits), () => {
      for (const d of debits) {
        const st = states.get(d.subject);
        if (st) st.owed += d.amount;
      }
    });
    await take(ahead);
  }

  /**
   * Sends the reports; `reported` follows each lease that took one, by the difference (a take
   * answered meanwhile has added its credit to both already). A refused report (a take touched
   * the lease since) or a failed one leaves `reported` as it was: held differs, and the next
   * sync reports again.
   */
  async function report(items: (ReportItem & { was: number })[]): Promise<void> {
    if (items.length === 0) return;
    let applied: Set<string>;
    try {
      applied = new Set(await store.report(items.map(({ was: _was, ...item }) => item)));
    } catch {
      return;
    }
    for (const r of items) {
      const st = states.get(r.subject);
      if (st && applied.has(r.subject)) st.reported += r.unspent - r.was;
    }
  }

  /**
   * The state's whole credit, given back: zeroed here first, so it is never spent twice. The
   * pool gets it: a state a take found exhausted may ask again (else it would refuse with credit
   * it just gave back in the pool).
   */
  function backOf(subject: string, st: QuotaState): GiveBack & { reported: number } {
    const item = {
      subject,
      back: st.held,
      generation: st.generation,
      periodStart: st.periodStart,
      reported: st.reported,
    };
    st.pool += st.held;
    st.held = 0;
    st.reported = 0;
    st.exhausted = false;
    return item;
  }

  /**
   * Idle credit, given back. A return that surely changed nothing leaves the credit (and what
   * the lease counts) with this instance again, to spend or to give back at a later sync, unless
   * the lease was voided or its period ended meanwhile. Dropped, it would be stranded in the
   * lease: lost to the quota until its period ends, for good without a refill.
   */
  async function giveBack(backs: (GiveBack & { reported: number })[]): Promise<void> {
    if (backs.length === 0) return;
    try {
      await store.giveBack(backs.map(({ reported: _reported, ...item }) => item));
    } catch (error) {
      if (!(error instanceof NotApplied)) return;
      const t = now();
      for (const b of backs) {
        const st = states.get(b.subject);
        const current =
          st?.generation === b.generation &&
          samePeriod(st.periodStart, b.periodStart) &&
          t < st.periodEnd - PERIOD_MARGIN_MS;
        if (!st || !current) continue;
        st.held += b.back;
        st.reported += b.reported;
        st.pool = Math.max(0, st.pool - b.back);
      }
    }
  }

  /** A failed report only leaves `held` high (conservative); a debit is owed again. */
  async function settle(work: Promise<void>, onFailure?: () => void): Promise<void> {
    try {
      await work;
    } catch {
      onFailure?.();
    }
  }

  /** What the state holds now, for its lease (which may still count credit spent since). */
  function reportOf(subject: string, st: QuotaState): ReportItem & { was: number } {
    return {
      subject,
      unspent: st.held,
      seq: st.seq,
      generation: st.generation,
      periodStart: st.periodStart,
      was: st.reported,
    };
  }

  /**
   * Every held credit, given back (a graceful stop). The spent credit is reported first: a
   * return takes off the lease only what is still held here, and a lease that still counted
   * spent credit would keep it from the pool until the instance is seen dead.
   */
  async function releaseAll(): Promise<void> {
    await flush;
    await taking;
    await report(
      [...states]
        .filter(([, st]) => st.held !== st.reported && st.seq > 0)
        .map(([subject, st]) => reportOf(subject, st)),
    );
    const backs = [...states]
      .filter(([, st]) => st.held > 0)
      .map(([s, st]) => {
        const { reported: _reported, ...item } = backOf(s, st);
        return item;
      });
    states.clear();
    await store.giveBack(backs);
  }

  /** Seconds until the quota refills (its period ends), or null when it never refills. */
  function retryAfter(subject: string): number | null {
    const end = states.get(subject)?.periodEnd ?? Number.POSITIVE_INFINITY;
    return Number.isFinite(end) ? secondsUntil(end, now()) : null;
  }

  /** What this instance believes remains (verify): the pool as last seen plus its own credit. */
  function remaining(subject: string): number {
    const st = states.get(subject);
    return st ? st.pool + st.held : 0;
  }

  return {
    check,
    charge,
    credit,
    sync,
    releaseAll,
    remaining,
    retryAfter,
    stats,
    get size() {
      return states.size;
    },
    get failing() {
      return failing;
    },
  };
}

export type QuotaCredit = ReturnType<typeof createQuotaCredit>;
