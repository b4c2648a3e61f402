import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Take } from './quota.queries.ts';
import {
  createQuotaCredit,
  PROBE_MS,
  QUOTA_NEEDS_CREDIT,
  QUOTA_OK,
  QUOTA_UNAVAILABLE,
  type QuotaStore,
} from './quota-credit.ts';

/** A pool of `pool` credit whose takes fail while `down`. */
function store(pool: number) {
  const state = { pool, down: false, takes: 0 };
  const s: QuotaStore = {
    take(items) {
      state.takes += 1;
      if (state.down) return Promise.reject(new Error('statement timeout'));
      return Promise.resolve(
        items.map((i): Take => {
          const got = Math.min(i.want, state.pool);
          state.pool -= got;
          const base = { subject: i.subject, limit: pool, generation: 1, seq: state.takes };
          return { ...base, got, pool: state.pool, periodStart: null, refill: null };
        }),
      );
    },
    report: (items) => Promise.resolve(items.map((i) => i.subject)),
    giveBack: () => Promise.resolve(),
    debit: () => Promise.resolve(),
  };
  return { s, state };
}

const QUOTA = { generation: 1 };

afterEach(() => {
  vi.useRealTimers();
});

describe('quota credit while takes fail', () => {
  it('answers unavailable without a statement right after a failed take, then probes again', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { s, state } = store(100);
    const credit = createQuotaCredit({ store: s, now: () => Date.now(), failOpen: false });
    expect(credit.check('k', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
    state.down = true;
    await credit.credit('k', QUOTA, 1);
    expect(credit.failing).toBe(true);
    const takes = state.takes;
    // Within PROBE_MS of the failed take: 503 at once, nothing sent.
    expect(credit.check('other', QUOTA, 1)).toBe(QUOTA_UNAVAILABLE);
    expect(state.takes).toBe(takes);
    // Postgres is back; past PROBE_MS the next request tries, and is admitted.
    state.down = false;
    vi.setSystemTime(Date.now() + PROBE_MS);
    expect(credit.check('other', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
    await credit.credit('other', QUOTA, 1);
    expect(credit.failing).toBe(false);
    expect(credit.check('other', QUOTA, 1)).toBe(QUOTA_OK);
  });

  it('lets one request probe at a time: the others are answered at once, with no statement', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { s, state } = store(100);
    let release: () => void = () => undefined;
    let sent = 0;
    const hanging: QuotaStore = {
      ...s,
      take: (items) => {
        sent += 1;
        if (!state.down) return s.take(items);
        return new Promise((_, reject) => (release = () => reject(new Error('timeout'))));
      },
    };
    /** Until the batched take (sent on the next turn of the loop) is out. */
    const taken = async (n: number) => {
      while (sent < n) await new Promise((resolve) => setImmediate(resolve));
    };
    const credit = createQuotaCredit({ store: hanging, now: () => Date.now(), failOpen: false });
    state.down = true;
    const first = credit.credit('a', QUOTA, 1);
    await taken(1);
    release();
    await first;
    vi.setSystemTime(Date.now() + PROBE_MS);
    // The probe: its take hangs (a Postgres that does not answer).
    expect(credit.check('b', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
    const probe = credit.credit('b', QUOTA, 1);
    await taken(2);
    for (const k of ['c', 'd', 'e']) expect(credit.check(k, QUOTA, 1)).toBe(QUOTA_UNAVAILABLE);
    vi.setSystemTime(Date.now() + 5 * PROBE_MS);
    expect(credit.check('f', QUOTA, 1)).toBe(QUOTA_UNAVAILABLE);
    expect(sent).toBe(2);
    release();
    await probe;
    vi.setSystemTime(Date.now() + PROBE_MS);
    state.down = false;
    expect(credit.check('f', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
  });

  it('admits at once while takes fail when failing open', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { s, state } = store(100);
    const credit = createQuotaCredit({ store: s, now: () => Date.now(), failOpen: true });
    state.down = true;
    expect(credit.check('k', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
    await credit.credit('k', QUOTA, 1);
    expect(credit.check('k', QUOTA, 1)).toBe(QUOTA_OK);
    vi.setSystemTime(Date.now() + 10 * PROBE_MS);
    // Never a probe to wait for: admitted, its cost owed until takes work again.
    expect(credit.check('other', QUOTA, 1)).toBe(QUOTA_OK);
  });
});

describe('quota credit reports', () => {
  it('reports what a take then as many uses left: the lease falls to the truth, and low is checked', async () => {
    const { s, state } = store(20);
    state.pool = 2; // 18 of 20 spent already
    const reports: { subject: string; unspent: number }[] = [];
    const lows: string[][] = [];
    const credit = createQuotaCredit({
      store: {
        ...s,
        report: (items) => {
          reports.push(...items.map(({ subject, unspent }) => ({ subject, unspent })));
          return Promise.resolve(items.map((i) => i.subject));
        },
        low: (subjects) => {
          lows.push([...subjects]);
          return Promise.resolve();
        },
      },
      now: () => Date.now(),
      failOpen: false,
    });
    // A take of 1 (the lease holds 1), then one use of it: held is back where it started.
    expect(credit.check('k', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
    await credit.credit('k', QUOTA, 1);
    expect(credit.check('k', QUOTA, 1)).toBe(QUOTA_OK);
    credit.charge('k', 1);
    await credit.sync();
    // The lease said 1; the truth is 0, and 1 of 20 left is under 10 %.
    expect(reports).toEqual([{ subject: 'k', unspent: 0 }]);
    expect(lows).toEqual([['k']]);
    // Nothing changed since: nothing to report.
    await credit.sync();
    expect(reports).toHaveLength(1);
  });

  it('reports spent credit before giving the rest back at a stop: the lease keeps none of it', async () => {
    const { s } = store(100);
    const sent: string[] = [];
    const credit = createQuotaCredit({
      store: {
        ...s,
        report: (items) => {
          sent.push(...items.map((i) => `report ${i.unspent}`));
          return Promise.resolve(items.map((i) => i.subject));
        },
        giveBack: (items) => {
          sent.push(...items.map((i) => `back ${i.back}`));
          return Promise.resolve();
        },
      },
      now: () => Date.now(),
      failOpen: false,
    });
    // A take of 1, used: the lease still says 1 until reported. Then a second key, held unused.
    expect(credit.check('spent', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
    await credit.credit('spent', QUOTA, 1);
    credit.charge('spent', 1);
    expect(credit.check('held', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
    await credit.credit('held', QUOTA, 1);
    await credit.releaseAll();
    // Without the report the spent key's lease would hold 1 forever after: the return takes off
    // only what is still held here (0).
    expect(sent).toEqual(['report 0', 'back 1']);
  });

  it('reports again after a report the lease refused (a take touched it meanwhile)', async () => {
    const { s } = store(100);
    const reports: number[] = [];
    let refuse = true;
    const credit = createQuotaCredit({
      store: {
        ...s,
        report: (items) => {
          reports.push(...items.map((i) => i.unspent));
          return Promise.resolve(refuse ? [] : items.map((i) => i.subject));
        },
      },
      now: () => Date.now(),
      failOpen: false,
    });
    expect(credit.check('k', QUOTA, 1)).toBe(QUOTA_NEEDS_CREDIT);
    await credit.credit('k', QUOTA, 1);
    credit.charge('k', 1);
    // Refused: the lease still says what the take gave. The sync also takes 1 ahead (busy key).
    await credit.sync();
    refuse = false;
    await credit.sync(); // so the next one reports again (what it holds now), and is taken
    await credit.sync(); // then nothing more
    expect(reports).toEqual([0, 1]);
  });
});

describe('quota credit across a PATCH', () => {
  it('never spends credit a take got under a generation the key has left', async () => {
    const { s } = store(100); // answers every take with generation 1
    const credit = createQuotaCredit({ store: s, now: () => Date.now(), failOpen: false });
    // The key was reloaded after a PATCH of its quota (generation 2) before the take's answer.
    expect(credit.check('k', { generation: 2 }, 1)).toBe(QUOTA_NEEDS_CREDIT);
    await credit.credit('k', { generation: 2 }, 1);
    expect(credit.check('k', { generation: 2 }, 1)).not.toBe(QUOTA_OK);
  });
});
