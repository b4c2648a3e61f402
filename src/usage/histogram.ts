/**
 * The fixed log-scale latency histogram stored in the hourly and daily rollups. Bucket i covers
 * [LOWER_BOUNDS_MS[i], LOWER_BOUNDS_MS[i+1]); the last one is open-ended. Fixed bounds make
 * histograms mergeable by element-wise addition, so percentiles over any window come from
 * rollups. Changing the bounds is a schema change (see db/migrations/0002_usage.ts).
 */
export const LOWER_BOUNDS_MS = [
  0, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000,
  10000, 30000,
] as const;
export const BUCKETS = LOWER_BOUNDS_MS.length;

export function bucketOf(latencyMs: number): number {
  let lo = 0;
  let hi = BUCKETS - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((LOWER_BOUNDS_MS[mid] ?? Infinity) <= latencyMs) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export const emptyHistogram = (): number[] => new Array<number>(BUCKETS).fill(0);

export function mergeInto(target: number[], source: readonly number[]): number[] {
  for (let i = 0; i < BUCKETS; i++) target[i] = (target[i] ?? 0) + (source[i] ?? 0);
  return target;
}

/**
 * Estimated quantile q (0–1), interpolated linearly inside the bucket holding it, so the estimate
 * always falls in the same bucket as the true value. Null for an empty histogram.
 */
export function quantile(hist: readonly number[], q: number): number | null {
  const total = hist.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    const count = hist[i] ?? 0;
    if (count > 0 && seen + count >= rank) {
      const lower = LOWER_BOUNDS_MS[i] ?? 0;
      const upper = LOWER_BOUNDS_MS[i + 1] ?? lower;
      return lower + ((upper - lower) * (rank - seen - 0.5)) / count;
    }
    seen += count;
  }
  return LOWER_BOUNDS_MS[BUCKETS - 1] ?? null;
}
