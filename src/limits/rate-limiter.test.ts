import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileRateHeaders } from './headers.ts';
import type { RateLimits } from './key-limits.ts';
import type { RatePolicy } from './limits.types.ts';
import { ADMITTED, createRateLimiter, type RateLimiter } from './rate-limiter.ts';
import type { ClaimGrant, ClaimItem, ClaimResult } from './rate-state.ts';
import { windowStartOf } from './window.ts';

const T0 = Date.UTC(2026, 4, 23, 12);
const SUBJECT = '0196f2f0-0000-7000-8000-000000000001';
const SYNC_MS = 100;

const rateOf = (policies: RatePolicy[]): RateLimits => ({
  policies,
  headers: compileRateHeaders(policies),
});
const rowOf = (i: { policy: string; windowSeconds: number; windowStart: number }) =>
  `${i.policy}|${i.windowSeconds}|${i.windowStart}`;

/** `key_rate_claims` as `claimCredit` (limits.queries.ts) keeps it: one `claimed` per row. */
function createStore() {
  const rows = new Map<string, number>();
  /** The largest `limit` any item brought to a row: `claimed` never passes it. */
  const limits = new Map<string, number>();
  /** Statements naming one row twice: Postgres refuses them (ON CONFLICT cannot affect a row twice). */
  let twice = 0;
  function apply(items: readonly ClaimItem[], dbNow: number): ClaimGrant[] {
    const seen = new Set<string>();
    return items.map((item) => {
      const row = `${item.subject}|${rowOf(item)}`;
      if (seen.has(row)) twice += 1;
      seen.add(row);
      const { subject, policy, windowSeconds, windowStart } = item;
      const width = windowSeconds * 1000;
      // Over, or more than one window ahead, on the database clock: not applied.
      if (windowStart + width <= dbNow || windowStart > dbNow + width) {
        return {
          subject,
          policy,
          windowSeconds,
          windowStart,
          granted: 0,
          claimed: 0,
          current: false,
        };
      }
      const kept = Math.max(0, (rows.get(row) ?? 0) - item.back) + item.used;
      const add = Math.min(item.want, Math.max(0, item.limit - item.used));
      const after = Math.max(kept, Math.min(kept + add, item.limit));
      rows.set(row, after);
      limits.set(row, Math.max(limits.get(row) ?? 0, item.limit));
      const granted = after - kept;
      return {
        subject,
        policy,
        windowSeconds,
        windowStart,
        granted,
        claimed: after,
        current: true,
      };
    });
  }
  const claimed = (row: string) => rows.get(`${SUBJECT}|${row}`) ?? 0;
  const limitOf = (row: string) => limits.get(`${SUBJECT}|${row}`) ?? 0;
  return { apply, claimed, limitOf, twice: () => twice };
}

type Call = {
  items: readonly ClaimItem[];
  /** Set once the statement ran: what the instance receives. */
  result: ClaimResult | null;
  resolve: (r: ClaimResult) => void;
  reject: (e: Error) => void;
};

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Instances sharing one store and one clock (each with its own skew). A claim runs and answers
 * only when the test says so, in any order; `failing` makes statements fail instead of running.
 */
function createWorld(options: {
  policies: RatePolicy[];
  skews: number[];
  storeInstances?: number;
}) {
  let clock = T0;
  const store = createStore();
  const inFlight: Call[] = [];
  let releasing = 0;
  const world = {
    failing: false,
    /** Per policy row: admitted by every instance, and per instance. */
    admitted: new Map<string, number>(),
    byInstance: new Map<string, number>(),
    lastInstances: options.skews.map(() => 1),
    verdicts: 0,
    asked: 0,
    doneTwice: 0,
  };
  const limiters: RateLimiter[] = options.skews.map((skew, i) =>
    createRateLimiter({
      syncMs: SYNC_MS,
      now: () => clock + skew,
      claim: (items) =>
        new Promise<ClaimResult>((resolve, reject) => {
          const answer = (r: ClaimResult) => {
            world.lastInstances[i] = r.instances;
            resolve(r);
          };
          inFlight.push({ items, result: null, resolve: answer, reject });
        }),
    }),
  );
  const rates = limiters.map(() => rateOf(options.policies));

  /**
   * The window each policy of instance `i` counts in, read back from the `t` of its `RateLimit`
   * field: exact, as `t` ≤ one window's seconds tells the window apart from a later one.
   */
  function windowsOf(i: number): number[] {
    const limiter = limiters[i]!;
    const t = limiter.now();
    const ts = [...limiter.header(SUBJECT, rates[i]!).matchAll(/;t=(\d+)/g)];
    return rates[i]!.policies.map((policy, p) => {
      const width = policy.windowSeconds * 1000;
      const ws = windowStartOf(t, width);
      const left = Number(ts[p]?.[1]) * 1000 - (ws + width - t);
      return ws + Math.floor(left / width) * width;
    });
  }
  function count(i: number) {
    const starts = windowsOf(i);
    rates[i]!.policies.forEach((policy, p) => {
      const row = rowOf({ policy: policy.name, ...policy, windowStart: starts[p]! });
      world.admitted.set(row, (world.admitted.get(row) ?? 0) + 1);
      world.byInstance.set(`${i}|${row}`, (world.byInstance.get(`${i}|${row}`) ?? 0) + 1);
    });
  }
  function request(i: number, wait: boolean) {
    if (!wait) {
      // A refusal charges nothing: the RateLimit field (remaining per policy) does not move.
      const before = limiters[i]!.header(SUBJECT, rates[i]!);
      const verdict = limiters[i]!.decide(SUBJECT, rates[i]!);
      if (verdict === ADMITTED) count(i);
      if (verdict >= 0) expect(limiters[i]!.header(SUBJECT, rates[i]!)).toBe(before);
      return;
    }
    ask(i, () => {});
  }
  /** `decideThen`, its callbacks counted: `settle` waits for every one. */
  function ask(i: number, then: (verdict: number) => void) {
    world.asked += 1;
    let calls = 0;
    limiters[i]!.decideThen(SUBJECT, rates[i]!, (verdict) => {
      calls += 1;
      if (calls === 1) world.verdicts += 1;
      else world.doneTwice += 1;
      if (verdict === ADMITTED) count(i);
      then(verdict);
    });
  }
  /** Runs the statement of call `k` (or fails it); its answer is delivered by `deliver`. */
  function execute(k: number) {
    const unrun = inFlight.filter((c) => !c.result);
    const call = unrun[k % Math.max(1, unrun.length)];
    if (!call) return;
    if (world.failing) {
      inFlight.splice(inFlight.indexOf(call), 1);
      call.reject(new Error('connection terminated'));
      return;
    }
    const grants = store.apply(call.items, clock);
    call.result = { grants, dbNow: clock, instances: options.storeInstances ?? limiters.length };
  }
  async function deliver(k: number) {
    const run = inFlight.filter((c) => c.result);
    const call = run[k % Math.max(1, run.length)];
    if (!call?.result) return;
    inFlight.splice(inFlight.indexOf(call), 1);
    call.resolve(call.result);
    await tick();
  }
  /** A graceful stop (and a restart): what it gives back goes through the store like a claim. */
  function release(i: number) {
    releasing += 1;
    void limiters[i]!.releaseAll().then((items) => {
      releasing -= 1;
      if (items.length > 0) inFlight.push({ items, result: null, resolve() {}, reject() {} });
    });
  }
  function setLimit(i: number, p: number, limit: number) {
    rates[i] = rateOf(rates[i]!.policies.map((x, j) => (j === p ? { ...x, limit } : x)));
  }
  const busy = () => inFlight.length > 0 || releasing > 0 || world.verdicts < world.asked;
  /** Every statement run and answered, every wait ended. */
  async function settle() {
    for (let round = 0; round < 200 && busy();) {
      round += 1;
      while (inFlight.some((c) => !c.result)) execute(0);
      while (inFlight.some((c) => c.result)) await deliver(0);
      await tick();
    }
  }
  return {
    world,
    store,
    limiters,
    rates,
    request,
    ask,
    execute,
    deliver,
    release,
    setLimit,
    settle,
    advance: (ms: number) => (clock += ms),
    now: () => clock,
  };
}
type World = ReturnType<typeof createWorld>;

type Step =
  | { kind: 'request'; i: number; wait: boolean; n: number }
  | { kind: 'tick' | 'sync' | 'release'; i: number }
  | { kind: 'execute' | 'deliver'; k: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'limit'; i: number; p: number; limit: number }
  | { kind: 'fail' };

const stepsArb = (withLimits: boolean, withReleases: boolean, withFailures = false) => {
  const i = fc.nat({ max: 3 });
  const steps: fc.Arbitrary<Step>[] = [
    fc.record({
      kind: fc.constant('request' as const),
      i,
      wait: fc.boolean(),
      n: fc.integer({ min: 1, max: 4 }),
    }),
    fc.record({ kind: fc.constantFrom('tick' as const, 'sync' as const), i }),
    fc.record({ kind: fc.constantFrom('execute' as const, 'deliver' as const), k: fc.nat(7) }),
    fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 900, max: 20_000 })),
    }),
  ];
  if (withLimits) {
    const limit = fc.integer({ min: 0, max: 12 });
    steps.push(fc.record({ kind: fc.constant('limit' as const), i, p: fc.nat(1), limit }));
  }
  if (withReleases) steps.push(fc.record({ kind: fc.constant('release' as const), i }));
  if (withFailures) steps.push(fc.constant({ kind: 'fail' as const }));
  const step = fc.oneof({ arbitrary: steps[0]!, weight: 3 }, ...steps);
  return fc.array(step, { maxLength: 150, size: 'max' });
};

async function run(w: World, steps: readonly Step[]) {
  const n = w.limiters.length;
  for (const step of steps) {
    if (step.kind === 'request') {
      for (let r = 0; r < step.n; r += 1) w.request(step.i % n, step.wait);
    } else if (step.kind === 'tick') await tick();
    else if (step.kind === 'sync') void w.limiters[step.i % n]!.sync();
    else if (step.kind === 'execute') w.execute(step.k);
    else if (step.kind === 'deliver') await w.deliver(step.k);
    else if (step.kind === 'advance') w.advance(step.ms);
    else if (step.kind === 'release') w.release(step.i % n);
    else if (step.kind === 'fail') w.world.failing = !w.world.failing;
    else if (step.kind === 'limit' && step.p < w.rates[step.i % n]!.policies.length) {
      w.setLimit(step.i % n, step.p, step.limit);
    }
  }
  w.world.failing = false;
  await w.settle();
}

/** Every instance syncs, then takes one request, until all refuse: the verdicts of the last round. */
async function drain(w: World): Promise<number[]> {
  let verdicts: number[] = [];
  for (let round = 0; round < 200; round += 1) {
    for (const limiter of w.limiters) void limiter.sync();
    await w.settle();
    verdicts = [];
    w.limiters.forEach((limiter, i) =>
      w.ask(i, (v) => {
        verdicts.push(v);
      }),
    );
    await w.settle();
    if (verdicts.every((v) => v !== ADMITTED)) return verdicts;
  }
  return verdicts;
}

const policiesArb = fc.oneof(
  fc
    .tuple(fc.integer({ min: 1, max: 12 }), fc.constantFrom(1, 2))
    .map(([limit, s]) => [{ name: 'burst', limit, windowSeconds: s }]),
  fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 12 })).map(([small, big]) => [
    { name: 'burst', limit: small, windowSeconds: 1 },
    { name: 'minute', limit: big, windowSeconds: 60 },
  ]),
);
const skewsArb = fc.array(fc.integer({ min: -300, max: 300 }), { minLength: 1, maxLength: 4 });

describe('createRateLimiter with instances sharing one claim store', () => {
  it('admits no more in a window than the credit claimed for it, and claims never pass the limit', async () => {
    await fc.assert(
      fc.asyncProperty(
        policiesArb,
        skewsArb,
        stepsArb(true, true),
        async (policies, skews, steps) => {
          const w = createWorld({ policies, skews });
          await run(w, steps);
          for (const [row, admitted] of w.world.admitted) {
            expect({ row, admitted }).toEqual({
              row,
              admitted: Math.min(admitted, w.store.claimed(row)),
            });
            expect(w.store.claimed(row)).toBeLessThanOrEqual(w.store.limitOf(row));
          }
          expect(w.store.twice()).toBe(0);
          expect(w.world.verdicts).toBe(w.world.asked);
          expect(w.world.doneTwice).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('createRateLimiter liveness and failures', () => {
  it('hands out the whole limit of a window to requests that keep coming, and admits again in the next', async () => {
    const oneArb = fc
      .tuple(fc.integer({ min: 1, max: 12 }), fc.constantFrom(1, 2))
      .map(([limit, s]) => [{ name: 'burst', limit, windowSeconds: s }]);
    await fc.assert(
      fc.asyncProperty(oneArb, skewsArb, stepsArb(false, true), async (policies, skews, steps) => {
        const w = createWorld({ policies, skews });
        await run(w, steps);
        const verdicts = await drain(w);
        const width = policies[0]!.windowSeconds * 1000;
        const row = rowOf({
          ...policies[0]!,
          policy: 'burst',
          windowStart: windowStartOf(w.now(), width),
        });
        expect(verdicts).toEqual(verdicts.map(() => 0));
        expect({ claimed: w.store.claimed(row), admitted: w.world.admitted.get(row) ?? 0 }).toEqual(
          {
            claimed: policies[0]!.limit,
            admitted: policies[0]!.limit,
          },
        );
        w.advance(width);
        let admitted = false;
        // Next-window credit another instance claimed ahead comes back once it has idled for two
        // syncs; the asking instance then claims it at its next sync.
        for (let round = 0; round < 8 && !admitted; round += 1) {
          w.ask(0, (v) => (admitted = v === ADMITTED));
          await w.settle();
          for (const limiter of w.limiters) void limiter.sync();
          await w.settle();
        }
        expect(admitted).toBe(true);
      }),
      {
        numRuns: 150,
        examples: [
          // An answer delivered 8.8 s after its statement ran (dbNow that old) set the clock back
          // past a window, and the next window's credit claimed meanwhile was dropped.
          [
            [{ name: 'burst', limit: 1, windowSeconds: 1 }],
            [0],
            [
              { kind: 'sync', i: 0 },
              { kind: 'request', i: 0, wait: true, n: 1 },
              { kind: 'tick', i: 0 },
              { kind: 'execute', k: 0 },
              { kind: 'advance', ms: 3316 },
              { kind: 'advance', ms: 5534 },
              { kind: 'sync', i: 0 },
              { kind: 'execute', k: 0 },
              { kind: 'execute', k: 0 },
              { kind: 'deliver', k: 2 },
              { kind: 'deliver', k: 0 },
              { kind: 'request', i: 0, wait: false, n: 1 },
            ],
          ],
        ],
      },
    );
  });

  it('admits at most its share of each window on each instance while every claim fails', async () => {
    await fc.assert(
      fc.asyncProperty(
        policiesArb,
        skewsArb,
        fc.integer({ min: 1, max: 4 }),
        stepsArb(false, false),
        async (policies, skews, storeInstances, steps) => {
          const w = createWorld({ policies, skews, storeInstances });
          for (const limiter of w.limiters) void limiter.sync();
          await w.settle();
          w.world.failing = true;
          for (const step of steps) {
            if (step.kind === 'request') w.request(step.i % skews.length, step.wait);
            else if (step.kind === 'tick') await tick();
            else if (step.kind === 'sync') void w.limiters[step.i % skews.length]!.sync();
            else if (step.kind === 'execute') w.execute(step.k);
            else if (step.kind === 'advance') w.advance(step.ms);
          }
          await w.settle();
          for (const [key, admitted] of w.world.byInstance) {
            const policy = policies.find((p) => key.split('|')[1] === p.name)!;
            const share = Math.floor(policy.limit / storeInstances);
            expect({ key, admitted }).toEqual({ key, admitted: Math.min(admitted, share) });
          }
          expect(w.world.verdicts).toBe(w.world.asked);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('calls done exactly once for every request, with claims failing at random', async () => {
    await fc.assert(
      fc.asyncProperty(
        policiesArb,
        skewsArb,
        stepsArb(true, true, true),
        async (policies, skews, steps) => {
          const w = createWorld({ policies, skews });
          await run(w, steps);
          expect(w.world.verdicts).toBe(w.world.asked);
          expect(w.world.doneTwice).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('createRateLimiter with two policies', () => {
  it('charges nothing for a refused request: the other policy still admits its whole limit', async () => {
    const w = createWorld({
      policies: [
        { name: 'burst', limit: 2, windowSeconds: 1 },
        { name: 'minute', limit: 5, windowSeconds: 60 },
      ],
      skews: [0],
    });
    w.advance(60_000 - (w.now() % 60_000));
    const verdicts: number[] = [];
    for (let second = 0; second < 4; second += 1) {
      for (let r = 0; r < 6; r += 1) {
        w.ask(0, (v) => verdicts.push(v));
        await w.settle();
      }
      w.advance(1000);
    }
    expect(verdicts).toEqual([
      ...[-1, -1, 0, 0, 0, 0],
      ...[-1, -1, 0, 0, 0, 0],
      ...[-1, 1, 1, 1, 1, 1],
      ...[1, 1, 1, 1, 1, 1],
    ]);
  });
});
