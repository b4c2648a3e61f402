/**
 * The key page's windows (24 hours by hour, 7 / 30 / 90 days by day) and how their buckets read.
 * Pure: the caller passes "now", so alignment and labels are unit-tested at fixed instants.
 *
 * A window ends at the end of the current bucket and holds exactly its number of whole buckets,
 * so the API (which aligns to whole buckets) returns one series point per bar, the current hour
 * or day included. Days are UTC days (the daily rollup's), so they are labelled in UTC; hours
 * are labelled in the reader's time zone.
 */
import type { KeyUsageQuery } from '../api.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export type WindowId = '24h' | '7d' | '30d' | '90d';

type WindowSpec = {
  id: WindowId;
  label: string;
  /** "the last 24 hours": what a caption or an empty state says. */
  phrase: string;
  granularity: 'hour' | 'day';
  buckets: number;
};

export const WINDOWS: readonly WindowSpec[] = [
  { id: '24h', label: '24 hours', phrase: 'the last 24 hours', granularity: 'hour', buckets: 24 },
  { id: '7d', label: '7 days', phrase: 'the last 7 days', granularity: 'day', buckets: 7 },
  { id: '30d', label: '30 days', phrase: 'the last 30 days', granularity: 'day', buckets: 30 },
  { id: '90d', label: '90 days', phrase: 'the last 90 days', granularity: 'day', buckets: 90 },
];

export const DEFAULT_WINDOW: WindowId = '30d';

export function windowSpec(id: WindowId): WindowSpec {
  return WINDOWS.find((w) => w.id === id) ?? (WINDOWS[2] as WindowSpec);
}

/** The query of a window at `now`: whole buckets, the current one last. */
export function windowQuery(id: WindowId, now: number): KeyUsageQuery {
  const spec = windowSpec(id);
  const unit = spec.granularity === 'hour' ? HOUR : DAY;
  const to = (Math.floor(now / unit) + 1) * unit;
  return {
    from: new Date(to - spec.buckets * unit).toISOString(),
    to: new Date(to).toISOString(),
    granularity: spec.granularity,
  };
}

/**
 * A bucket's label: "Dec 1" for a UTC day, "Dec 1, 14:00" for an hour in the reader's zone;
 * `short` (chart ticks) drops the day of an hour that is not midnight.
 */
export function bucketLabel(
  startIso: string,
  granularity: 'hour' | 'day',
  locale?: string,
  timeZone?: string,
  short = false,
): string {
  const at = new Date(startIso);
  if (granularity === 'day')
    return new Intl.DateTimeFormat(locale, {
      month: 'short',
      day: 'numeric',
      timeZone: 'UTC',
    }).format(at);
  const zone = timeZone ? { timeZone } : {};
  const time = new Intl.DateTimeFormat(locale, {
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
    ...zone,
  });
  const text = time.format(at);
  if (short && text !== '00:00') return text;
  const day = new Intl.DateTimeFormat(locale, { month: 'short', day: 'numeric', ...zone }).format(
    at,
  );
  return `${day}, ${text}`;
}

/** "1.2%" (a rate of 0.012), "—" when there were no requests to divide by. */
export function formatRate(rate: number | null, locale?: string): string {
  if (rate === null) return '—';
  return new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 1 }).format(rate);
}

/** "12.3 ms", "—" when nothing was measured. */
export function formatLatency(ms: number | null, locale?: string): string {
  if (ms === null) return '—';
  const digits = ms < 10 ? 2 : ms < 100 ? 1 : 0;
  return `${new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(ms)} ms`;
}
