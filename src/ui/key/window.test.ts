import { describe, expect, it } from 'vitest';
import { bucketLabel, formatLatency, formatRate, windowQuery, WINDOWS } from './window.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('key page windows', () => {
  const now = Date.parse('2026-12-02T14:25:31.123Z');

  it('ends 24 hours at the end of the current hour, by hour', () => {
    expect(windowQuery('24h', now)).toEqual({
      from: '2026-12-01T15:00:00.000Z',
      to: '2026-12-02T15:00:00.000Z',
      granularity: 'hour',
    });
  });

  it('ends the day windows at the end of the current UTC day, by day', () => {
    expect(windowQuery('7d', now)).toEqual({
      from: '2026-11-26T00:00:00.000Z',
      to: '2026-12-03T00:00:00.000Z',
      granularity: 'day',
    });
    expect(windowQuery('90d', now).from).toBe('2026-09-04T00:00:00.000Z');
  });

  it('holds exactly its number of buckets, also on a boundary instant', () => {
    for (const w of WINDOWS) {
      for (const at of [
        now,
        Date.parse('2026-12-02T00:00:00.000Z'),
        Date.parse('2026-12-02T13:00:00.000Z'),
      ]) {
        const q = windowQuery(w.id, at);
        const unit = w.granularity === 'hour' ? HOUR : DAY;
        expect((Date.parse(q.to) - Date.parse(q.from)) / unit).toBe(w.buckets);
        expect(Date.parse(q.to)).toBeGreaterThan(at);
        expect(Date.parse(q.to) - at).toBeLessThanOrEqual(unit);
      }
    }
  });

  it('labels days in UTC and hours in the given zone', () => {
    // Midnight UTC is still the day before in New York: the daily bucket must not shift.
    expect(bucketLabel('2026-12-02T00:00:00.000Z', 'day', 'en-US', 'America/New_York')).toBe(
      'Dec 2',
    );
    expect(bucketLabel('2026-12-02T00:00:00.000Z', 'hour', 'en-US', 'America/New_York')).toBe(
      'Dec 1, 19:00',
    );
    expect(bucketLabel('2026-12-02T14:00:00.000Z', 'hour', 'en-GB', 'UTC')).toBe('2 Dec, 14:00');
  });

  it('formats rates and latencies, and "—" for nothing measured', () => {
    expect(formatRate(0.0123, 'en-US')).toBe('1.2%');
    expect(formatRate(0, 'en-US')).toBe('0%');
    expect(formatRate(null)).toBe('—');
    expect(formatLatency(3.14159, 'en-US')).toBe('3.14 ms');
    expect(formatLatency(42.25, 'en-US')).toBe('42.3 ms');
    expect(formatLatency(1234.4, 'en-US')).toBe('1,234 ms');
    expect(formatLatency(null)).toBe('—');
  });
});

describe('chart tick labels', () => {
  it('name the day only at midnight for hours', () => {
    expect(bucketLabel('2026-12-02T14:00:00.000Z', 'hour', 'en-US', 'UTC', true)).toBe('14:00');
    expect(bucketLabel('2026-12-02T00:00:00.000Z', 'hour', 'en-US', 'UTC', true)).toBe(
      'Dec 2, 00:00',
    );
    expect(bucketLabel('2026-12-02T00:00:00.000Z', 'day', 'en-US', 'UTC', true)).toBe('Dec 2');
  });
});
