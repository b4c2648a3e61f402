/**
 * Fixed windows aligned to the epoch: a window of width w covers [k·w, (k+1)·w). Fixed rather
 * than a sliding counter so that a key is always admitted again once its window has passed and
 * the IETF `r`/`t` values are exact. All times are integer epoch milliseconds.
 */

/** Exact for any non-negative integer `now` below 2^53 (`%` on integers is exact there). */
export function windowStartOf(now: number, widthMs: number): number {
  return now - (now % widthMs);
}

/**
 * Whole seconds until the window starting at `windowStart` ends, at least 1 (`t`, Retry-After):
 * in [1, widthMs / 1000] while `now` is within the window. A client told 1 at a window's last
 * instant retries in the next window, never within this one.
 */
export function secondsLeft(windowStart: number, widthMs: number, now: number): number {
  return secondsUntil(windowStart + widthMs, now);
}

/** Whole seconds from `now` until `end` (epoch ms), at least 1: a `Retry-After`. */
export function secondsUntil(end: number, now: number): number {
  return Math.max(1, Math.ceil((end - now) / 1000));
}
