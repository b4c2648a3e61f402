import { describe, expect, it } from 'vitest';
import { configFromEnv, ConfigError, parseEnv } from './config.ts';

describe('configuration', () => {
  it('refuses an hourly retention shorter than the 14-day hourly series and spike baseline', () => {
    expect(() => parseEnv({ KEYTRAIL_HOURLY_RETENTION_DAYS: '13' })).toThrow(
      /KEYTRAIL_HOURLY_RETENTION_DAYS/,
    );
    expect(parseEnv({ KEYTRAIL_HOURLY_RETENTION_DAYS: '14' }).KEYTRAIL_HOURLY_RETENTION_DAYS).toBe(
      14,
    );
  });

  it('refuses a raw-event retention shorter than the 7 days reported events reach back', () => {
    expect(() => parseEnv({ KEYTRAIL_RETENTION_DAYS: '6' })).toThrow(
      /KEYTRAIL_RETENTION_DAYS: must be at least 7/,
    );
    expect(parseEnv({ KEYTRAIL_RETENTION_DAYS: '7' }).KEYTRAIL_RETENTION_DAYS).toBe(7);
  });

  it('accepts a fractional spike factor (the org usage query casts it to float8)', () => {
    expect(parseEnv({ KEYTRAIL_SPIKE_FACTOR: '2.5' }).KEYTRAIL_SPIKE_FACTOR).toBe(2.5);
  });
});

describe('empty and invalid values', () => {
  it('treats a variable set to the empty string as unset (DATABASE_URL= in .env files)', () => {
    const env = parseEnv({ DATABASE_URL: '', PORT: '', KEYTRAIL_DEMO_ROUTES: '' });
    expect(env.DATABASE_URL).toBeUndefined();
    expect(env.PORT).toBe(8080);
    expect(env.KEYTRAIL_DEMO_ROUTES).toBeUndefined();
  });

  it('reports every problem at once, on one line', () => {
    let message = '';
    try {
      parseEnv({ DATABASE_URL: 'mysql://x', PORT: 'eighty', KEYTRAIL_LOG_FORMAT: 'xml' });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      message = (error as Error).message;
    }
    expect(message).not.toContain('\n');
    expect(message).toMatch(/^invalid configuration: /);
    for (const name of ['DATABASE_URL', 'PORT', 'KEYTRAIL_LOG_FORMAT'])
      expect(message).toContain(name);
  });

  it('needs both DATABASE_URL and the pepper for an external database', () => {
    expect(() => configFromEnv(parseEnv({}))).toThrow(
      'invalid configuration: DATABASE_URL: required; KEYTRAIL_KEY_PEPPER: required with DATABASE_URL',
    );
    const config = configFromEnv(
      parseEnv({
        DATABASE_URL: 'postgres://h/db',
        KEYTRAIL_KEY_PEPPER: 'p'.repeat(32),
        KEYTRAIL_TRUST_PROXY: '2',
      }),
    );
    expect(config).toMatchObject({
      databaseUrl: 'postgres://h/db',
      demoRoutes: false,
      trustProxy: 2,
      logFormat: 'auto',
    });
  });

  it('reads trust proxy as a flag, a hop count or a list of subnets', () => {
    const trust = (value: string) =>
      configFromEnv(
        parseEnv({
          DATABASE_URL: 'postgres://h/db',
          KEYTRAIL_KEY_PEPPER: 'p'.repeat(32),
          KEYTRAIL_TRUST_PROXY: value,
        }),
      ).trustProxy;
    expect(trust('true')).toBe(true);
    expect(trust('false')).toBe(false);
    expect(trust('loopback, 10.0.0.0/8')).toBe('loopback, 10.0.0.0/8');
  });
});
