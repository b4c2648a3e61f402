/**
 * Fixed windows aligned to the epoch: a window of width w covers [k·w, (k+1)·w). Fixed rather
 * than a sliding counter so that a key is always admitted again once its window has passed and
 * the IETF `r`/`t` values are exact. All times are integer epoch milliseconds.
 *
 * The hot path allocates nothing: one preallocated state object per policy, numbers only.
 * Invariant: `start` never decreases, so a clock stepping back never resets a count.
 */

export type FixedWindow = { widthMs: number; start: number; count: number };

export function createWindow(windowSeconds: number): FixedWindow {
  return { widthMs: windowSeconds * 1000, start: 0, count: 0 };
}

/** Exact for any non-negative integer `now` below 2^53 (`%` on integers is exact there). */
export function windowStartOf(now: number, widthMs: number): number {
  return now - (now % widthMs);
}

/** Moves to the window of `now` if it is later; an earlier `now` (clock step back) keeps the state. */
export function roll(w: FixedWindow, now: number): void {
  const start = windowStartOf(now, w.widthMs);
  if (start > w.start) {
    w.start = start;
    w.count = 0;
  }
}

export function admits(w: FixedWindow, now: number, limit: number, cost = 1): boolean {
  roll(w, now);
  return w.count + cost <= limit;
}

/** Charges without checking: callers charge only after every policy of the key admitted. */
export function charge(w: FixedWindow, now: number, cost = 1): void {
  roll(w, now);
  w.count += cost;
}

export function remaining(w: FixedWindow, now: number, limit: number): number {
  roll(w, now);
  return Math.max(0, limit - w.count);
}

/**
 * Seconds until the current window ends, in [1, windowSeconds]. After a clock step back `now`
 * may precede `start`; the answer is then capped at the window's width, so a client retrying
 * early is refused again rather than told to wait for longer than a window.
 */
export function resetSeconds(w: FixedWindow, now: number): number {
  roll(w, now);
  return Math.min(Math.ceil((w.start + w.widthMs - now) / 1000), w.widthMs / 1000);
}
