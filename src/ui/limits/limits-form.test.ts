import { describe, expect, it } from 'vitest';
import { EMPTY_LIMITS, limitsFormOf, parseLimits } from './limits-form.ts';

describe('limits form', () => {
  it('is no limits at all when left empty', () => {
    expect(parseLimits(EMPTY_LIMITS, false)).toEqual({
      ok: true,
      value: { rate_limits: [], quota: null, allowed_ips: [] },
    });
  });

  it('round-trips a key’s limits, remaining only when given while editing', () => {
    const key = {
      rate_limits: [{ name: 'burst', limit: 100, window_seconds: 60 }],
      quota: { limit: 1000, remaining: 250, refill: { interval: 'month' as const, amount: 1000 } },
      allowed_ips: ['10.0.0.0/8', '2001:db8::/32'],
    };
    const form = limitsFormOf(key);
    expect(form.allowedIps).toBe('10.0.0.0/8\n2001:db8::/32');
    const { remaining: _, ...quota } = key.quota;
    expect(parseLimits(form, true)).toEqual({ ok: true, value: { ...key, quota } });
    expect(parseLimits({ ...form, remaining: '40' }, true)).toMatchObject({
      value: { quota: { remaining: 40 } },
    });
    expect(parseLimits({ ...form, remaining: '40' }, false)).toMatchObject({ value: { quota } });
  });

  it('refuses a refill above the quota and numbers that are not whole', () => {
    const on = { ...EMPTY_LIMITS, quotaOn: true, quotaLimit: '10' };
    expect(parseLimits({ ...on, refill: 'day', refillAmount: '11' }, false)).toMatchObject({
      ok: false,
      message: 'The refill must not exceed the quota.',
    });
    expect(parseLimits({ ...on, quotaLimit: '1.5' }, false)).toMatchObject({ ok: false });
    expect(parseLimits({ ...on, refill: 'day' }, false)).toMatchObject({
      value: { quota: { limit: 10, refill: { interval: 'day', amount: 10 } } },
    });
  });
});
