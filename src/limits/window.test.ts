import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WINDOW_SECONDS_MAX } from './limits.types.ts';
import {
  admits,
  charge,
  createWindow,
  remaining,
  resetSeconds,
  roll,
  windowStartOf,
} from './window.ts';

const T0 = Date.UTC(2026, 4, 23, 12);
const windowSecondsArb = fc.oneof(
  fc.integer({ min: 1, max: 120 }),
  fc.constantFrom(3600, 86_400, WINDOW_SECONDS_MAX),
);
const nowArb = fc.integer({ min: 0, max: 4 * 10 ** 12 });

describe('windowStartOf', () => {
  it('aligns to the epoch', () => {
    expect(windowStartOf(0, 1000)).toBe(0);
    expect(windowStartOf(999, 1000)).toBe(0);
    expect(windowStartOf(1000, 1000)).toBe(1000);
    expect(windowStartOf(T0 + 12_345, 60_000)).toBe(T0);
  });

  it('returns the start of the window that contains now', () => {
    fc.assert(
      fc.property(nowArb, windowSecondsArb, (now, seconds) => {
        const width = seconds * 1000;
        const start = windowStartOf(now, width);
        expect(start % width).toBe(0);
        expect(start).toBeLessThanOrEqual(now);
        expect(now).toBeLessThan(start + width);
      }),
    );
  });
});

describe('roll', () => {
  it('keeps the count within the same window, clears it across one or many windows', () => {
    fc.assert(
      fc.property(nowArb, windowSecondsArb, fc.nat({ max: 1000 }), (now, seconds, skipped) => {
        const w = createWindow(seconds);
        charge(w, now, 5);
        const start = w.start;
        roll(w, start + w.widthMs - 1);
        expect(w).toEqual({ widthMs: seconds * 1000, start, count: 5 });
        roll(w, start + (skipped + 1) * w.widthMs);
        expect(w).toEqual({
          widthMs: seconds * 1000,
          start: start + (skipped + 1) * w.widthMs,
          count: 0,
        });
      }),
    );
  });

  it('keeps the state when the clock steps back, even across a window boundary', () => {
    const w = createWindow(10);
    charge(w, T0 + 15_000, 3);
    roll(w, T0 + 2_000);
    expect(w).toEqual({ widthMs: 10_000, start: T0 + 10_000, count: 3 });
    expect(remaining(w, T0, 3)).toBe(0);
  });
});

describe('admits and charge', () => {
  it('admits up to the limit within a window and again in the next one', () => {
    const w = createWindow(1);
    for (let i = 0; i < 3; i += 1) {
      expect(admits(w, T0 + 100, 3)).toBe(true);
      charge(w, T0 + 100);
    }
    expect(admits(w, T0 + 999, 3)).toBe(false);
    expect(remaining(w, T0 + 999, 3)).toBe(0);
    expect(admits(w, T0 + 1000, 3)).toBe(true);
    expect(remaining(w, T0 + 1000, 3)).toBe(3);
  });

  it('refuses a cost larger than what is left', () => {
    const w = createWindow(60);
    charge(w, T0, 8);
    expect(admits(w, T0, 10, 3)).toBe(false);
    expect(admits(w, T0, 10, 2)).toBe(true);
  });

  it('never charges more than the limit in one window when each charge follows an admit', () => {
    const stepArb = fc.record({
      dt: fc.oneof(
        fc.constant(0),
        fc.integer({ min: 0, max: 3000 }),
        fc.integer({ min: -5000, max: 0 }),
      ),
      cost: fc.integer({ min: 0, max: 4 }),
    });
    fc.assert(
      fc.property(
        windowSecondsArb,
        fc.integer({ min: 1, max: 20 }),
        fc.array(stepArb, { maxLength: 200 }),
        (seconds, limit, steps) => {
          const w = createWindow(seconds);
          const charged = new Map<number, number>();
          let now = T0;
          for (const { dt, cost } of steps) {
            now = Math.max(0, now + dt);
            if (!admits(w, now, limit, cost)) continue;
            charge(w, now, cost);
            // Attributed to the window the state is in: a step back charges the later window.
            charged.set(w.start, (charged.get(w.start) ?? 0) + cost);
          }
          for (const total of charged.values()) expect(total).toBeLessThanOrEqual(limit);
        },
      ),
    );
  });

  it('admits no more in a window when the clock steps back than when it does not', () => {
    fc.assert(
      fc.property(
        windowSecondsArb,
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 10 ** 9 }),
        (seconds, limit, back) => {
          const w = createWindow(seconds);
          const now = T0 + w.widthMs - 1;
          while (admits(w, now, limit)) charge(w, now);
          expect(admits(w, Math.max(0, now - back), limit)).toBe(false);
          expect(remaining(w, Math.max(0, now - back), limit)).toBe(0);
          expect(w.count).toBe(limit);
        },
      ),
    );
  });
});

describe('resetSeconds', () => {
  it('counts whole seconds to the end of the window', () => {
    const w = createWindow(60);
    expect(resetSeconds(w, T0)).toBe(60);
    expect(resetSeconds(w, T0 + 1)).toBe(60);
    expect(resetSeconds(w, T0 + 59_000)).toBe(1);
    expect(resetSeconds(w, T0 + 59_999)).toBe(1);
  });

  it('is in [1, windowSeconds], also after the clock steps back', () => {
    fc.assert(
      fc.property(windowSecondsArb, nowArb, nowArb, (seconds, a, b) => {
        const w = createWindow(seconds);
        for (const now of [a, b]) {
          const t = resetSeconds(w, now);
          expect(Number.isInteger(t)).toBe(true);
          expect(t).toBeGreaterThanOrEqual(1);
          expect(t).toBeLessThanOrEqual(seconds);
        }
      }),
    );
  });

  it('admits after t seconds without traffic, and at no earlier instant of an exhausted window', () => {
    fc.assert(
      fc.property(
        windowSecondsArb,
        fc.integer({ min: 1, max: 5 }),
        nowArb,
        fc.double({ min: 0, max: 1, noNaN: true }),
        (seconds, limit, now, fraction) => {
          const w = createWindow(seconds);
          charge(w, now, limit);
          const t = resetSeconds(w, now);
          const end = now + t * 1000;
          const earlier = now + Math.floor(fraction * (w.start + w.widthMs - 1 - now));
          expect(admits(w, earlier, limit)).toBe(false);
          expect(admits(w, end, limit)).toBe(true);
        },
      ),
    );
  });
});
