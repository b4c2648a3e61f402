import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WINDOW_SECONDS_MAX } from './limits.types.ts';
import { secondsLeft, windowStartOf } from './window.ts';

const T0 = Date.UTC(2026, 4, 23, 12);
const windowSecondsArb = fc.oneof(
  fc.integer({ min: 1, max: 120 }),
  fc.constantFrom(3600, 86_400, WINDOW_SECONDS_MAX),
);
const nowArb = fc.oneof(
  fc.integer({ min: 0, max: 4 * 10 ** 12 }),
  fc.maxSafeNat(),
  fc.constant(Number.MAX_SAFE_INTEGER),
);

describe('windowStartOf', () => {
  it('aligns to the epoch', () => {
    expect(windowStartOf(0, 1000)).toBe(0);
    expect(windowStartOf(999, 1000)).toBe(0);
    expect(windowStartOf(1000, 1000)).toBe(1000);
    expect(windowStartOf(T0 + 12_345, 60_000)).toBe(T0);
    expect(windowStartOf(Number.MAX_SAFE_INTEGER, 1000)).toBe(Number.MAX_SAFE_INTEGER - 991);
  });

  it('returns exactly the start of the window that contains now, for any integer below 2^53', () => {
    fc.assert(
      fc.property(nowArb, windowSecondsArb, (now, seconds) => {
        const width = seconds * 1000;
        const start = windowStartOf(now, width);
        // Checked in BigInt: a float rounding anywhere would show as a mismatch here.
        const exact = BigInt(now) - (BigInt(now) % BigInt(width));
        expect(BigInt(start)).toBe(exact);
        expect(Number.isSafeInteger(start)).toBe(true);
        expect(start).toBeLessThanOrEqual(now);
        expect(now - start).toBeLessThan(width);
      }),
    );
  });

  it('gives every instant of one window the same start, and the next window a start one width on', () => {
    fc.assert(
      fc.property(
        fc.maxSafeNat(),
        windowSecondsArb,
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (n, seconds, fraction) => {
          const width = seconds * 1000;
          // k·width + width stays below 2^53.
          const start = (n % Math.floor(Number.MAX_SAFE_INTEGER / width - 1)) * width;
          const inside = start + Math.floor(fraction * width);
          expect(windowStartOf(start, width)).toBe(start);
          expect(windowStartOf(inside, width)).toBe(start);
          expect(windowStartOf(start + width - 1, width)).toBe(start);
          expect(windowStartOf(start + width, width)).toBe(start + width);
        },
      ),
    );
  });
});

describe('secondsLeft', () => {
  it('counts whole seconds to the end of the window, rounding up', () => {
    expect(secondsLeft(T0, 60_000, T0)).toBe(60);
    expect(secondsLeft(T0, 60_000, T0 + 1)).toBe(60);
    expect(secondsLeft(T0, 60_000, T0 + 1000)).toBe(59);
    expect(secondsLeft(T0, 60_000, T0 + 59_000)).toBe(1);
    expect(secondsLeft(T0, 60_000, T0 + 59_999)).toBe(1);
  });

  it('is at least 1 once the window has passed (a clock ahead of the window)', () => {
    expect(secondsLeft(T0, 60_000, T0 + 60_000)).toBe(1);
    expect(secondsLeft(T0, 60_000, T0 + 10 ** 9)).toBe(1);
  });

  it('is an integer in [1, windowSeconds] for any now within the window', () => {
    fc.assert(
      fc.property(
        nowArb,
        windowSecondsArb,
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (base, seconds, fraction) => {
          const width = seconds * 1000;
          const start = windowStartOf(Math.max(0, base - width), width);
          const now = start + Math.floor(fraction * width);
          const t = secondsLeft(start, width, now);
          expect(Number.isInteger(t)).toBe(true);
          expect(t).toBeGreaterThanOrEqual(1);
          expect(t).toBeLessThanOrEqual(seconds);
        },
      ),
    );
  });

  it('ends no earlier than the window: now + t seconds is in a later window, now + t - 1 is not', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4 * 10 ** 12 }), windowSecondsArb, (now, seconds) => {
        const width = seconds * 1000;
        const start = windowStartOf(now, width);
        const t = secondsLeft(start, width, now);
        expect(windowStartOf(now + t * 1000, width)).toBeGreaterThan(start);
        if (t > 1) expect(windowStartOf(now + (t - 1) * 1000, width)).toBe(start);
      }),
    );
  });
});
