/**
 * SPEC §11 across real processes: 2 and 4 `keytrail serve` children on one database, a key
 * hammered through all of them. Counts come from the responses the test itself received.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../src/testing/harness.ts';
import { createKey, createOrg, type TestOrg } from '../src/testing/factories.ts';
import { spawnServe, stopServe, type ServeProcess } from './serve-processes.ts';

const MONTH = 2_678_400;
const dbUrl = useTestDatabase();
let app: TestApp;
let org: TestOrg;
let serves: ServeProcess[] = [];

beforeAll(async () => {
  app = await startTestApp(dbUrl());
  org = await createOrg(app.client, 'Cluster limits');
  serves = await Promise.all(Array.from({ length: 4 }, () => spawnServe(dbUrl())));
}, 60_000);
afterAll(async () => {
  await Promise.all(serves.map((s) => stopServe(s)));
  await app.close();
});

const limited = (limit: number, windowSeconds: number) =>
  createKey(app.client, org, {
    rate_limits: [{ name: 'p', limit, window_seconds: windowSeconds }],
  });

/** `failed`: no answer at all (an instance killed on purpose). */
type Tally = { admitted: number; refused: number; other: number; failed: number };

/**
 * `concurrency` loops send requests through `through` in turn until `stop()` says so. Each loop
 * counts what it got; a status other than 200 and 429 is kept apart (it must not happen).
 */
async function hammer(
  key: string,
  through: readonly ServeProcess[],
  concurrency: number,
  stop: (t: Tally, lastRefusals: number[]) => boolean,
): Promise<Tally> {
  const tally: Tally = { admitted: 0, refused: 0, other: 0, failed: 0 };
  // Consecutive 429s per instance: every instance refusing means none holds credit any more.
  const streak = through.map(() => 0);
  let turn = 0;
  const loop = async () => {
    while (!stop(tally, streak)) {
      const i = turn++ % through.length;
      const res = await fetch(`${through[i]!.baseUrl}/v1/demo/orders/1`, {
        headers: { authorization: `Bearer ${key}` },
      }).catch(() => null);
      if (!res) {
        tally.failed += 1;
        continue;
      }
      await res.arrayBuffer();
      if (res.status === 200) {
        tally.admitted += 1;
        streak[i] = 0;
      } else if (res.status === 429) {
        tally.refused += 1;
        streak[i] = (streak[i] ?? 0) + 1;
      } else tally.other += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return tally;
}

/** Until every instance has refused `n` times in a row: all credit is spent, none is held. */
const allRefusing = (n: number) => (_t: Tally, streak: number[]) => streak.every((s) => s >= n);

describe('limits across processes', { timeout: 120_000 }, () => {
  for (const n of [2, 4]) {
    it(`admits exactly the limit through ${n} instances, large and small`, async () => {
      for (const limit of [600, 7]) {
        const k = await limited(limit, MONTH);
        const tally = await hammer(k.key, serves.slice(0, n), 16, allRefusing(3));
        expect(tally.other + tally.failed).toBe(0);
        expect(tally.admitted).toBe(limit);
        expect(tally.refused).toBeGreaterThanOrEqual(3 * n);
      }
    });
  }

  it('admits the limit in each window again once the window passed, through 4 instances', async () => {
    const k = await limited(5, 5);
    for (let round = 0; round < 2; round += 1) {
      // Sent only in [0.3 s, 3 s] of a 5 s window: every decision falls in that same window.
      await waitFor(() => Date.now() % 5000 > 300 && Date.now() % 5000 < 1000, {
        timeoutMs: 6000,
        intervalMs: 20,
      });
      const end = Date.now() - (Date.now() % 5000) + 3000;
      const tally = await hammer(k.key, serves, 8, () => Date.now() >= end);
      expect(tally.other + tally.failed).toBe(0);
      expect(tally.admitted).toBe(5);
    }
  });

  it('never admits past the limit when an instance is killed mid-run', async () => {
    const extra = await spawnServe(dbUrl());
    const k = await limited(400, MONTH);
    let killed = false;
    const tally = await hammer(k.key, [...serves.slice(0, 2), extra], 12, (t) => {
      if (!killed && t.admitted >= 100) {
        killed = true;
        extra.child.kill('SIGKILL');
      }
      return t.admitted + t.refused + t.other >= 2000;
    });
    await extra.exited;
    // Requests in flight to the killed instance fail; no response admits past the limit, and
    // what the killed instance held is lost for this window, never handed out twice.
    expect(tally.admitted).toBeLessThanOrEqual(400);
    expect(tally.admitted).toBeGreaterThan(100);
  });

  it('admits exactly a quota through 4 instances, and never more with one SIGKILLed mid-run', async () => {
    const quota = (limit: number) =>
      app.client.post(`/api/orgs/${org.orgId}/api-keys`, {
        key: org.adminKey,
        body: { name: 'metered', quota: { limit } },
      });
    const exact = await quota(300);
    const tally = await hammer(exact.body.key, serves, 16, allRefusing(3));
    expect(tally.other + tally.failed).toBe(0);
    expect(tally.admitted).toBe(300);
    for (let round = 0; round < 2; round += 1) {
      const extra = await spawnServe(dbUrl());
      const k = await quota(400);
      let killed = false;
      const run = await hammer(k.body.key, [...serves.slice(0, 2), extra], 12, (t) => {
        if (!killed && t.admitted >= 60 + 80 * round) {
          killed = true;
          extra.child.kill('SIGKILL');
        }
        return killed && t.refused >= 200;
      });
      await extra.exited;
      // What the killed instance held is stranded (never handed out twice): at most the quota.
      expect(run.admitted).toBeLessThanOrEqual(400);
      expect(run.admitted).toBeGreaterThanOrEqual(60 + 80 * round);
    }
  });

  it('applies a changed limit on every instance within 1 s', async () => {
    const k = await limited(1000, MONTH);
    for (const s of serves) {
      const res = await fetch(`${s.baseUrl}/v1/demo/orders/1`, {
        headers: { authorization: `Bearer ${k.key}` },
      });
      expect(res.headers.get('ratelimit-policy')).toBe('"p";q=1000;w=2678400');
    }
    const changedAt = Date.now();
    await app.client.patch(`/api/orgs/${org.orgId}/api-keys/${k.id}`, {
      key: org.adminKey,
      body: { rate_limits: [{ name: 'q', limit: 50, window_seconds: 60 }] },
    });
    await Promise.all(
      serves.map((s) =>
        waitFor(
          async () => {
            const res = await fetch(`${s.baseUrl}/v1/demo/orders/1`, {
              headers: { authorization: `Bearer ${k.key}` },
            });
            return res.headers.get('ratelimit-policy') === '"q";q=50;w=60';
          },
          { timeoutMs: 1000, intervalMs: 20 },
        ),
      ),
    );
    expect(Date.now() - changedAt).toBeLessThan(1000);
  });
});
