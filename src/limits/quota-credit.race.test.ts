/**
 * Quota credit under every interleaving fast-check's scheduler finds: requests, syncs and the
 * store's statements (each committed at one scheduled moment and answered at a later one) in any
 * order, some refused (they change nothing) and some losing their answer after they committed.
 * A model of the SQL (quota.queries.ts) holds the truth: one quota row, this instance's lease.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createLimiter, QUOTA_EXCEEDED } from './limiter.ts';
import type { KeyLimits } from './key-limits.ts';
import { createQuotaCredit, NotApplied, type QuotaStore } from './quota-credit.ts';
import { ADMITTED, type RateLimiter } from './rate-limiter.ts';

const LIMIT = 12;
/** Syncs enough for idle credit to go back (quota-credit's IDLE_RETURN_SYNCS is 4). */
const IDLE_SYNCS = 5;
const SUBJECT = 'k';

/** How a statement ends: answered, refused by the server (rolled back), or its answer lost. */
type Fate = 'ok' | 'refused' | 'lost';

/** The quota row and the lease, as the statements of quota.queries.ts change them. */
function modelStore(s: fc.Scheduler, fates: Iterator<Fate>) {
  const db = { pool: LIMIT, held: 0, seq: 0, faults: true };
  const statement = async <T>(label: string, commit: () => T): Promise<T> => {
    const fate = db.faults ? (fates.next().value as Fate) : 'ok';
    await s.schedule(Promise.resolve(), `${label} commits (${fate})`);
    if (fate === 'refused') throw new NotApplied('statement timeout');
    const result = commit();
    await s.schedule(Promise.resolve(), `${label} answered`);
    if (fate === 'lost') throw new Error('connection lost');
    return result;
  };
  const store: QuotaStore = {
    take: (items) =>
      statement('take', () =>
        items.map((i) => {
          const got = Math.min(i.want, db.pool);
          db.pool -= got;
          db.held += got;
          db.seq += 1;
          const t = { subject: i.subject, got, pool: db.pool, limit: LIMIT, generation: 1 };
          return { ...t, periodStart: null, refill: null, seq: db.seq };
        }),
      ),
    report: (items) =>
      statement('report', () =>
        items
          .filter((i) => i.seq === db.seq && db.held >= i.unspent)
          .map((i) => {
            db.held = i.unspent;
            return i.subject;
          }),
      ),
    giveBack: (items) =>
      statement('giveBack', () => {
        for (const i of items) {
          const amount = Math.min(i.back, db.held);
          db.held -= amount;
          db.pool += amount;
        }
      }),
    debit: (items) =>
      statement('debit', () => {
        for (const i of items) db.pool -= i.amount;
      }),
  };
  return { db, store };
}

/** No rate limits here: the limiter is asked about the quota alone. */
const noRate = {} as RateLimiter;
const LIMITS: KeyLimits = {
  subject: SUBJECT,
  allowsIp: null,
  rate: null,
  quota: { generation: 1 },
};

type Step = { kind: 'request'; cost: number } | { kind: 'sync' };
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('request' as const), cost: fc.integer({ min: 1, max: 3 }) }),
  fc.constant({ kind: 'sync' as const }),
);

/** Until nothing is scheduled, a turn of the event loop after the last (takes batch on one). */
async function quiet(s: fc.Scheduler): Promise<void> {
  for (;;) {
    await new Promise((resolve) => setImmediate(resolve));
    if (s.count() === 0) return;
    await s.waitAll();
  }
}

/**
 * Runs the steps in the scheduler's order, then, faults over, lets time pass (idle credit goes
 * back), asks once more, and stops gracefully. Returns what was admitted, and the last verdict.
 */
async function run(s: fc.Scheduler, steps: Step[], fates: Iterator<Fate>) {
  const { db, store } = modelStore(s, fates);
  const credit = createQuotaCredit({ store, now: () => 0, failOpen: false });
  const limiter = createLimiter(noRate, credit);
  let admitted = 0;
  let syncs = Promise.resolve();
  const decide = (cost: number) =>
    new Promise<number>((resolve) => limiter.decideThen(LIMITS, cost, resolve)).then((verdict) => {
      if (verdict === ADMITTED) admitted += cost;
      return verdict;
    });
  const settled = async <T>(work: Promise<T>): Promise<T> => {
    await quiet(s);
    return work;
  };
  for (const st of steps) {
    void s.schedule(Promise.resolve(), st.kind).then(() => {
      // Syncs never overlap (limits-sync runs one at a time).
      if (st.kind === 'sync') syncs = syncs.then(() => credit.sync());
      else void decide(st.cost);
    });
  }
  await settled(syncs);
  db.faults = false;
  for (let i = 0; i < IDLE_SYNCS; i++) await settled(credit.sync());
  const before = admitted;
  const last = await settled(decide(1));
  await settled(credit.releaseAll());
  return { db, admitted, before, last };
}

const fates = (weights: Record<Fate, number>) =>
  fc.infiniteStream(
    fc.oneof(
      ...(Object.entries(weights) as [Fate, number][]).map(([fate, weight]) => ({
        arbitrary: fc.constant(fate),
        weight,
      })),
    ),
  );

describe('quota credit under any interleaving', () => {
  it('loses no credit when statements are refused: a quiet instance admits while any is left, and a stop gives back the rest', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(step, { maxLength: 40 }),
        fates({ ok: 6, refused: 1, lost: 0 }),
        async (s, steps, stream) => {
          const { db, admitted, before, last } = await run(s, steps, stream[Symbol.iterator]());
          if (before < LIMIT) expect(last).not.toBe(QUOTA_EXCEEDED);
          expect(db.pool + admitted).toBe(LIMIT);
          expect(db.held).toBe(0);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('never admits more than the limit, even when answers are lost after a commit', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(step, { maxLength: 40 }),
        fates({ ok: 6, refused: 1, lost: 1 }),
        async (s, steps, stream) => {
          const { db, admitted } = await run(s, steps, stream[Symbol.iterator]());
          expect(admitted).toBeLessThanOrEqual(LIMIT);
          // A lost answer may strand credit (as a crash does), never hand it out twice.
          expect(db.pool + admitted).toBeLessThanOrEqual(LIMIT);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
