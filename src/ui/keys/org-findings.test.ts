import { describe, expect, it } from 'vitest';
import { findingsSummary, findingText } from './org-findings.tsx';

const finding = (kind: string, severity: 'warning' | 'info', more: object = {}) =>
  ({
    kind,
    severity,
    key: { id: 'k', name: 'n', prefix: 'p' },
    at: '2026-12-06T00:00:00.000Z',
    count: 1,
    replaced_by: null,
    daily_mean: null,
    ...more,
  }) as never;

describe('findings', () => {
  it('sums them up, warnings first', () => {
    expect(findingsSummary([])).toBe('none');
    expect(
      findingsSummary([
        finding('revoked_key_used', 'warning'),
        finding('spike', 'info'),
        finding('limited', 'info'),
      ]),
    ).toBe('1 warning, 2 notes');
  });

  it('says what each kind means', () => {
    expect(findingText(finding('revoked_key_used', 'warning', { count: 3 }))).toContain(
      '3 denied attempts',
    );
    expect(findingText(finding('spike', 'info', { count: 150, daily_mean: 9.6 }))).toBe(
      'spikes: 150 requests in 24 hours against 10 a day before',
    );
  });
});
