import { describe, expect, it } from 'vitest';
import {
  exactTime,
  formatNumber,
  lastUsedCell,
  NEVER,
  relativeTime,
  shortAge,
  shortDate,
} from './format.ts';

const NOW = Date.parse('2026-06-15T12:00:00.000Z');
const S = 1000;
const MIN = 60 * S;
const H = 60 * MIN;
const D = 24 * H;
const ago = (ms: number) => new Date(NOW - ms).toISOString();

describe('relativeTime', () => {
  it.each([
    [0, 'just now'],
    [44 * S, 'just now'],
    [44 * S + 999, 'just now'],
    [45 * S, '1 minute ago'],
    [119 * S, '1 minute ago'],
    [2 * MIN, '2 minutes ago'],
    [59 * MIN + 59 * S, '59 minutes ago'],
    [H, '1 hour ago'],
    [2 * H, '2 hours ago'],
    [23 * H + 59 * MIN, '23 hours ago'],
    [D, '1 day ago'],
    [29 * D + 23 * H, '29 days ago'],
    [30 * D, '1 month ago'],
    [59 * D, '1 month ago'],
    [60 * D, '2 months ago'],
    [330 * D, '11 months ago'],
    [364 * D, '11 months ago'],
    [365 * D, '1 year ago'],
    [3 * 365 * D, '3 years ago'],
  ])('%i ms before now reads "%s"', (ms, text) => {
    expect(relativeTime(ago(ms), NOW)).toBe(text);
  });

  it('reads a key never used (null) as an em dash', () => {
    expect(relativeTime(null, NOW)).toBe(NEVER);
    expect(NEVER).toBe('—');
  });

  it('clamps a future instant (clock skew) to now instead of "in 3 minutes"', () => {
    expect(relativeTime(new Date(NOW + 3 * MIN).toISOString(), NOW)).toBe('just now');
    expect(relativeTime(new Date(NOW + 400 * D).toISOString(), NOW)).toBe('just now');
  });

  it('reads an unparseable time as never rather than "NaN years ago"', () => {
    expect(relativeTime('yesterday', NOW)).toBe(NEVER);
  });
});

describe('lastUsedCell', () => {
  it('renders never-used as the dash and no <time>', () => {
    expect(lastUsedCell(null, NOW)).toEqual({ kind: 'never', text: '—' });
  });

  it('renders a use as relative text with the exact ISO instant and the exact local time', () => {
    const iso = '2026-06-15T09:59:58.123Z';
    expect(lastUsedCell(iso, NOW, 'en-US', 'UTC')).toEqual({
      kind: 'time',
      text: '2 hours ago',
      datetime: '2026-06-15T09:59:58.123Z',
      title: 'Jun 15, 2026, 9:59:58 AM UTC',
    });
  });

  it('shows the exact time in the reader’s time zone', () => {
    const cell = lastUsedCell('2026-06-15T09:59:58.123Z', NOW, 'en-US', 'Europe/Berlin');
    expect(cell).toMatchObject({ datetime: '2026-06-15T09:59:58.123Z' });
    expect(cell.kind === 'time' && cell.title).toBe('Jun 15, 2026, 11:59:58 AM GMT+2');
  });
});

describe('exact times and dates', () => {
  it('formats the instant with seconds and zone, and the day alone', () => {
    expect(exactTime('2026-01-02T03:04:05Z', 'en-US', 'UTC')).toBe('Jan 2, 2026, 3:04:05 AM UTC');
    expect(shortDate('2026-01-02T03:04:05Z', 'en-US', 'UTC')).toBe('Jan 2, 2026');
  });
});

describe('shortAge (data freshness)', () => {
  it.each([
    [0, '0 s'],
    [2 * S + 400, '2 s'],
    [59 * S, '59 s'],
    [MIN, '1 min'],
    [59 * MIN, '59 min'],
    [H, '1 h'],
    [25 * H, '1 d'],
    [-5 * S, '0 s'],
  ])('%i ms reads "%s"', (ms, text) => {
    expect(shortAge(ms, 'en-US')).toBe(text);
  });
});

describe('formatNumber', () => {
  it('groups digits by locale', () => {
    expect(formatNumber(1204, 'en-US')).toBe('1,204');
    expect(formatNumber(1234567, 'de-DE')).toBe('1.234.567');
    expect(formatNumber(0, 'en-US')).toBe('0');
    expect(formatNumber(12.345, 'en-US')).toBe('12.35');
  });
});
