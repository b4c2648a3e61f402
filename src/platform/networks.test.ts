import { describe, expect, it } from 'vitest';
import { parseNetworks } from './networks.ts';
import { refusal } from './ssrf.ts';

const policy = (raw: string) => ({ allowLoopback: false, allowedNetworks: parseNetworks(raw) });

describe('allowed networks with ports', () => {
  it('admits only the ports an entry names, and 443 for an entry without ports', () => {
    const p = policy('10.0.0.0/8:443+8443, 10.1.0.0/16:8000-8099, [fd00::/8]:9443, 10.9.0.0/16');
    expect(refusal('10.5.5.5', p, 8443)).toBeNull();
    expect(refusal('10.5.5.5', p, 443)).toBeNull();
    expect(refusal('10.5.5.5', p, 22)).toBe('private address not allowed on port 22');
    expect(refusal('10.1.2.3', p, 8050)).toBeNull(); // 10.1/16 by its range
    expect(refusal('fd00::7', p, 9443)).toBeNull();
    expect(refusal('fd00::7', p, 443)).toMatch(/not allowed on port 443/);
    expect(refusal('10.9.1.1', p, 443)).toBeNull();
    expect(refusal('10.9.1.1', p, 8443)).toBeNull(); // 10/8 names 8443
    expect(refusal('192.168.1.1', p, 443)).toBe('private address not allowed');
    expect(refusal('10.9.1.1', policy('10.9.0.0/16'), 8443)).toMatch(/on port 8443/);
    expect(refusal('10.9.1.1', policy('10.9.0.0/16:*'), 22)).toBeNull();
    expect(refusal('fd12::1', policy('fd12::/16'), 443)).toBeNull();
  });

  it('refuses a malformed entry, saying which', () => {
    for (const bad of [
      'fd00::/8:443', // IPv6 with ports needs brackets
      '10.0.0.0/8:',
      '10.0.0.0/8:0',
      '10.0.0.0/8:65536',
      '10.0.0.0/8:9000-8000',
      '10.0.0.0/8:443,8443', // the list is comma-separated: `8443` alone is no entry
      '10.0.0.0/8:https',
      '[fd00::/8]443',
      'example.com:443',
    ]) {
      expect(() => parseNetworks(bad), bad).toThrow(/10\.0\.0\.0\/8|fd00|example|8443/);
    }
  });

  it('refuses IPv4 other than four decimal octets (010.… would be octal, 8.…)', () => {
    for (const bad of [
      '010.20.0.0/16:443',
      '0xa.0.0.0/8',
      '10.0.0/8',
      '10.0.0.0/08',
      '[fe80::1%eth0/64]',
    ]) {
      expect(() => parseNetworks(bad), bad).toThrow(/not a CIDR.*four decimal octets/);
    }
    expect(parseNetworks('10.20.0.0/16:443, 10.0.0.0/8')).toEqual([
      '10.20.0.0/16:443',
      '10.0.0.0/8',
    ]);
  });

  it('refuses IPv4-mapped networks, which never match, saying so', () => {
    expect(() => parseNetworks('[::ffff:10.0.0.0/104]:443')).toThrow(/IPv4-mapped.*never match/);
  });

  it('refuses an entry covering loopback, or too broad, or link-local among other addresses', () => {
    for (const [bad, why] of [
      ['127.0.0.0/8', /loopback/],
      ['127.0.0.1/32:8443', /loopback/],
      ['0.0.0.0/8', /loopback or 0\.0\.0\.0/],
      ['[::/8]:443', /loopback/],
      ['::1/128', /loopback/],
      ['0.0.0.0/0:*', /too broad/],
      ['10.0.0.0/7', /too broad/],
      ['fc00::/6', /too broad/],
      ['169.0.0.0/8', /link-local 169\.254\.0\.0\/16/],
      ['[fe00::/8]:443', /link-local fe80::\/10/],
    ] as const) {
      expect(() => parseNetworks(bad), bad).toThrow(why);
    }
    // Link-local listed on its own is the operator's explicit choice.
    const p = policy('169.254.0.0/16, [fe80::/10]:443, 10.0.0.0/8, fc00::/7');
    expect(refusal('169.254.169.254', p, 443)).toBeNull();
    expect(refusal('fe80::1', p, 443)).toBeNull();
    expect(refusal('fd00::1', p, 443)).toBeNull();
  });
});
