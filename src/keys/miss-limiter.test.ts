import { describe, expect, it } from 'vitest';
import { addressKey, MissLimiter } from './miss-limiter.ts';

describe('miss limiter', () => {
  it('keys IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64', () => {
    expect(addressKey('10.0.0.1')).toBe('10.0.0.1');
    expect(addressKey('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(addressKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:DB8:0001:0002::9')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey(undefined)).toBe('');
  });

  it('refuses only once unknown keys emptied the bucket, and refills over time', () => {
    let now = 0;
    const limiter = new MissLimiter({ perSecond: 2, burst: 3 }, () => now);
    for (let i = 0; i < 3; i++) {
      expect(limiter.allow('a')).toBe(true);
      limiter.charge('a');
    }
    expect(limiter.allow('a')).toBe(false);
    expect(limiter.allow('b')).toBe(true);
    now += 500; // one token back at 2 per second
    expect(limiter.allow('a')).toBe(true);
    expect(limiter.refused).toBe(1);
    expect(limiter.retryAfterSeconds()).toBe(1);
  });
});
