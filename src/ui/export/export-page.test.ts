import { describe, expect, it } from 'vitest';
import { detailsText } from '../audit/audit-page.tsx';
import { csvRows } from './export-page.tsx';

describe('csvRows', () => {
  it('counts the lines after the header', () => {
    expect(csvRows('a,b\r\n1,2\r\n3,4\r\n')).toBe(2);
    expect(csvRows('a,b\n')).toBe(0);
    expect(csvRows('')).toBe(0);
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
