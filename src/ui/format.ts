/**
 * Pure formatting for the admin page: relative and exact times, numbers. No DOM, no clock: the
 * caller passes "now", so every boundary is unit-tested at fixed instants.
 *
 * The page's words are English, so relative phrases are English ("2 hours ago"); numbers and
 * exact times follow the reader's locale (a format, not a word).
 */

export const NEVER = '—';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const MONTH_DAYS = 30;
const YEAR_DAYS = 365;

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'always' });

type Unit = 'minute' | 'hour' | 'day' | 'month' | 'year';

/**
 * The coarsest unit that fits, counted down (floor), so "23 hours ago" never claims a day:
 * under 45 s "just now", then minutes (45 s reads as 1 minute), hours, days (1–29), months
 * (30 days to 11 months), years. Future instants (clock skew between server and browser) are
 * clamped to now rather than shown as "in 3 seconds".
 */
export function relativeParts(elapsedMs: number): { value: number; unit: Unit } | 'just now' {
  const ms = Math.max(0, elapsedMs);
  if (ms < 45 * SECOND) return 'just now';
  if (ms < HOUR) return { value: Math.max(1, Math.floor(ms / MINUTE)), unit: 'minute' };
  if (ms < DAY) return { value: Math.floor(ms / HOUR), unit: 'hour' };
  const days = Math.floor(ms / DAY);
  if (days < MONTH_DAYS) return { value: days, unit: 'day' };
  if (days < YEAR_DAYS)
    return { value: Math.min(11, Math.floor(days / MONTH_DAYS)), unit: 'month' };
  return { value: Math.floor(days / YEAR_DAYS), unit: 'year' };
}

/** "2 hours ago", "just now", or "—" for a key never used (null) or an unreadable time. */
export function relativeTime(iso: string | null, now: number): string {
  if (iso === null) return NEVER;
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return NEVER;
  const parts = relativeParts(now - at);
  return parts === 'just now' ? parts : relative.format(-parts.value, parts.unit);
}

/** "Dec 1, 2026, 10:24:05 PM UTC": the exact instant in the reader's time zone, for a tooltip. */
export function exactTime(iso: string, locale?: string, timeZone?: string): string {
  return new Intl.DateTimeFormat(locale, {
    dateStyle: 'medium',
    timeStyle: 'long',
    ...(timeZone && { timeZone }),
  }).format(new Date(iso));
}

/** "Dec 1, 2026": the day only, for columns where the hour does not matter (Created). */
export function shortDate(iso: string, locale?: string, timeZone?: string): string {
  return new Intl.DateTimeFormat(locale, {
    dateStyle: 'medium',
    ...(timeZone && { timeZone }),
  }).format(new Date(iso));
}

export type TimeCell =
  { kind: 'never'; text: string } | { kind: 'time'; text: string; datetime: string; title: string };

/**
 * What a "Last used" cell renders: "—" for never, else the relative text inside
 * `<time datetime="<the exact ISO instant>" title="<exact local time>">`. The datetime keeps the
 * API's string as it came (no re-serialisation that could shift precision).
 */
export function lastUsedCell(
  iso: string | null,
  now: number,
  locale?: string,
  timeZone?: string,
): TimeCell {
  if (iso === null || Number.isNaN(Date.parse(iso))) return { kind: 'never', text: NEVER };
  return {
    kind: 'time',
    text: relativeTime(iso, now),
    datetime: iso,
    title: exactTime(iso, locale, timeZone),
  };
}

/** "2 s", "3 min", "4 h", "2 d": a short age for "data as of 2 s ago" (ingest freshness). */
export function shortAge(elapsedMs: number, locale?: string): string {
  const ms = Math.max(0, elapsedMs);
  const n = (v: number) => formatNumber(Math.floor(v), locale);
  if (ms < MINUTE) return `${n(ms / SECOND)} s`;
  if (ms < HOUR) return `${n(ms / MINUTE)} min`;
  if (ms < DAY) return `${n(ms / HOUR)} h`;
  return `${n(ms / DAY)} d`;
}

const numberFormats = new Map<string, Intl.NumberFormat>();

/** "1,204" in en-US: grouped digits, formatters cached per locale (tables call this a lot). */
export function formatNumber(value: number, locale?: string): string {
  const cacheKey = locale ?? '';
  let format = numberFormats.get(cacheKey);
  if (!format) {
    format = new Intl.NumberFormat(locale, { maximumFractionDigits: 2 });
    numberFormats.set(cacheKey, format);
  }
  return format.format(value);
}

/** "3.4 MB", "812 KB", "96 B": decimal units, as browsers show downloads. */
export function formatBytes(bytes: number, locale?: string): string {
  if (bytes < 1_000) return `${formatNumber(bytes, locale)} B`;
  if (bytes < 1_000_000) return `${formatNumber(Math.round(bytes / 1_000), locale)} KB`;
  if (bytes < 1_000_000_000) return `${formatNumber(Math.round(bytes / 100_000) / 10, locale)} MB`;
  return `${formatNumber(Math.round(bytes / 10_000_000) / 100, locale)} GB`;
}
