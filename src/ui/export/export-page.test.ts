import { describe, expect, it } from 'vitest';
import { detailsText } from '../audit/audit-page.tsx';
import { formatBytes } from '../format.ts';
import { progressText } from './export-page.tsx';

describe('progressText', () => {
  it('says how far an export got, in rows and bytes', () => {
    expect(progressText({ state: 'ready', rows: 0, bytes: 0 })).toBe('Starting the download…');
    expect(progressText({ state: 'streaming', rows: 12_345, bytes: 3_456_789 })).toBe(
      'Exporting… 12,345 rows so far (3.5 MB)',
    );
    expect(progressText({ state: 'done', rows: 1, bytes: 180 })).toBe('Downloaded 1 row (180 B)');
    expect(progressText({ state: 'failed', rows: 3, bytes: 10 })).toBe('');
  });
});

describe('formatBytes', () => {
  it('uses decimal units with one decimal place for megabytes', () => {
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(812_400)).toBe('812 KB');
    expect(formatBytes(150_250_000)).toBe('150.3 MB');
    expect(formatBytes(2_345_000_000)).toBe('2.35 GB');
  });
});

describe('detailsText', () => {
  it('is key: value text, non-strings as JSON', () => {
    expect(detailsText({ reason: 'leaked', overlap_seconds: 60, scopes: ['a'] })).toBe(
      'reason: leaked, overlap_seconds: 60, scopes: ["a"]',
    );
    expect(detailsText({})).toBe('');
  });
});
