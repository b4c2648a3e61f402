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

  it('refuses a daily-rollup retention shorter than the 8 days of the spike baseline', () => {
    expect(() => parseEnv({ KEYTRAIL_ROLLUP_RETENTION_DAYS: '7' })).toThrow(
      /KEYTRAIL_ROLLUP_RETENTION_DAYS: must be at least 8/,
    );
    expect(parseEnv({ KEYTRAIL_ROLLUP_RETENTION_DAYS: '8' }).KEYTRAIL_ROLLUP_RETENTION_DAYS).toBe(
      8,
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

describe('webhook retries', () => {
  const URL = 'postgres://u:p@h/db';
  const PEPPER = 'p'.repeat(32);
  /** The shortest series pg-boss can draw: retry n waits at least delay × 2^n, capped. */
  const shortest = (delay: number, cap: number, limit: number) =>
    Array.from({ length: limit }, (_, n) => Math.min(cap, delay * 2 ** n)).reduce((a, b) => a + b);

  it('span at least 24 hours whatever the first delay', () => {
    for (const delay of [1, 10, 30, 600, 3600]) {
      const env = parseEnv({
        DATABASE_URL: URL,
        KEYTRAIL_KEY_PEPPER: PEPPER,
        KEYTRAIL_WEBHOOK_RETRY_DELAY_SECONDS: String(delay),
      });
      const { retry } = configFromEnv(env).webhooks;
      expect(
        shortest(delay, retry.maxDelaySeconds, retry.limit),
        `delay ${delay}`,
      ).toBeGreaterThanOrEqual(86_400);
      // …and not a retry more than needed.
      expect(shortest(delay, retry.maxDelaySeconds, retry.limit - 1)).toBeLessThan(86_400);
    }
    const defaults = configFromEnv(parseEnv({ DATABASE_URL: URL, KEYTRAIL_KEY_PEPPER: PEPPER }));
    expect(defaults.webhooks.retry).toEqual({ delaySeconds: 30, maxDelaySeconds: 3600, limit: 30 });
  });

  it('refuses a malformed allowed network', () => {
    expect(() =>
      parseEnv({ DATABASE_URL: URL, KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS: '10.0.0.0/8, nope' }),
    ).toThrow(/KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS/);
    // IPv6 naming ports goes in brackets: the message says which entry and how to write it.
    expect(() =>
      parseEnv({
        DATABASE_URL: URL,
        KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS: '10.0.0.0/8:443,fd00::/8:443',
      }),
    ).toThrow(/KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS: not a CIDR with optional ports: fd00::\/8:443/);
    expect(
      parseEnv({ DATABASE_URL: URL, KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS: '10.0.0.0/8:443+8443' })
        .KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS,
    ).toBe('10.0.0.0/8:443+8443');
  });
});
