import { describe, expect, it } from 'vitest';
import { formatNumber } from '../format.ts';
import { describePolicy, emptyRow, parseRows, rowsOf } from './rate-rows.ts';

describe('rate limit rows', () => {
  it('round-trips policies through rows, each window in its largest whole unit', () => {
    const policies = [
      { name: 'burst', limit: 100, window_seconds: 1 },
      { name: 'quarter', limit: 5000, window_seconds: 900 },
      { name: 'daily', limit: 100_000, window_seconds: 86_400 },
    ];
    const rows = rowsOf(policies);
    expect(rows.map((r) => `${r.window} ${r.unit}`)).toEqual(['1 second', '15 minute', '1 day']);
    expect(parseRows(rows)).toEqual({ ok: true, value: policies });
  });

  it('names the row and the problem', () => {
    const row = { ...emptyRow(0), limit: '10' };
    expect(parseRows([row, { ...row }])).toMatchObject({ ok: false, message: /^Limit 2: .*burst/ });
    expect(parseRows([{ ...row, name: 'Burst' }])).toMatchObject({ message: /^Limit 1: the name/ });
    for (const limit of ['', '0', '1.5', '-3', '1e3', '1000000001'])
      expect(parseRows([{ ...row, limit }])).toMatchObject({ message: /requests must be/ });
    expect(parseRows([{ ...row, window: '32', unit: 'day' }])).toMatchObject({
      message: /up to 31 days/,
    });
    expect(parseRows([row, emptyRow(1), emptyRow(2), emptyRow(3)])).toMatchObject({
      message: 'At most 3 rate limits.',
    });
  });

  it('says a policy as a sentence', () => {
    const say = (window_seconds: number) =>
      describePolicy({ name: 'x', limit: 5000, window_seconds }, (n) => formatNumber(n, 'en-US'));
    expect(say(1)).toBe('5,000 per second');
    expect(say(900)).toBe('5,000 per 15 minutes');
    expect(say(86_400)).toBe('5,000 per day');
  });
});
