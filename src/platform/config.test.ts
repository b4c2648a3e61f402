import { describe, expect, it } from 'vitest';
import { parseEnv } from './config.ts';

describe('configuration', () => {
  it('refuses an hourly retention shorter than the 14-day hourly series and spike baseline', () => {
    expect(() => parseEnv({ KEYTRAIL_HOURLY_RETENTION_DAYS: '13' })).toThrow(
      /KEYTRAIL_HOURLY_RETENTION_DAYS/,
    );
    expect(parseEnv({ KEYTRAIL_HOURLY_RETENTION_DAYS: '14' }).KEYTRAIL_HOURLY_RETENTION_DAYS).toBe(
      14,
    );
  });

  it('accepts a fractional spike factor (the org usage query casts it to float8)', () => {
    expect(parseEnv({ KEYTRAIL_SPIKE_FACTOR: '2.5' }).KEYTRAIL_SPIKE_FACTOR).toBe(2.5);
  });
});
