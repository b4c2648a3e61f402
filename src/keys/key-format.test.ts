import { describe, expect, it } from 'vitest';
import { BODY_LENGTH, generateKey, hashKey, hashesEqual, parseKey } from './key-format.ts';
import { missingScopes, statusOf, ungrantableScopes } from './keys.types.ts';

describe('key format', () => {
  it('generates keys that parse back with their environment and display prefix', () => {
    for (const env of ['live', 'test'] as const) {
      const key = generateKey(env);
      expect(key.plaintext).toMatch(new RegExp(`^sk_${env}_[0-9A-Za-z]{${BODY_LENGTH}}$`));
      expect(key.prefix).toBe(key.plaintext.slice(0, `sk_${env}_`.length + 8));
      expect(parseKey(key.plaintext)).toEqual(key);
    }
  });

  it('carries at least 160 random bits', () => {
    expect(32 * Math.log2(62)).toBeGreaterThanOrEqual(160);
    const keys = new Set(Array.from({ length: 2000 }, () => generateKey('live').plaintext));
    expect(keys.size).toBe(2000);
  });

  it('rejects every single-character typo through the checksum', () => {
    const { plaintext } = generateKey('live');
    const start = 'sk_live_'.length;
    let rejected = 0;
    for (let i = start; i < plaintext.length; i++) {
      const c = plaintext[i] === 'a' ? 'b' : 'a';
      const typo = plaintext.slice(0, i) + c + plaintext.slice(i + 1);
      if (parseKey(typo) === null) rejected += 1;
    }
    expect(rejected).toBe(plaintext.length - start);
  });

  it('rejects a key moved to the other environment, truncated or padded', () => {
    const { plaintext } = generateKey('live');
    expect(parseKey(plaintext.replace('sk_live_', 'sk_test_'))).toBeNull();
    expect(parseKey(plaintext.slice(0, -1))).toBeNull();
    expect(parseKey(`${plaintext}x`)).toBeNull();
    expect(parseKey(` ${plaintext}`)).toBeNull();
    expect(parseKey('')).toBeNull();
  });

  it('hashes with the pepper: another pepper gives another hash', () => {
    const { plaintext } = generateKey('test');
    const a = hashKey('pepper-one-0123456789abcdef0123456789', plaintext);
    const b = hashKey('pepper-two-0123456789abcdef0123456789', plaintext);
    expect(a).toHaveLength(32);
    expect(hashesEqual(a, b)).toBe(false);
    expect(hashesEqual(a, Buffer.from(a))).toBe(true);
  });
});

describe('scopes', () => {
  it('org:admin implies every management scope but not application scopes', () => {
    expect(missingScopes(['org:admin'], ['keys:write', 'audit:read'])).toEqual([]);
    expect(missingScopes(['keys:read'], ['keys:write', 'keys:read'])).toEqual(['keys:write']);
    expect(missingScopes(['org:admin'], ['orders:read'])).toEqual(['orders:read']);
  });

  it('a non-admin key can only grant what it holds; an admin key can grant anything', () => {
    expect(ungrantableScopes(['keys:write', 'keys:read'], ['keys:read'])).toEqual([]);
    expect(ungrantableScopes(['keys:write'], ['org:admin', 'keys:read'])).toEqual([
      'org:admin',
      'keys:read',
    ]);
    expect(ungrantableScopes(['org:admin'], ['orders:read', 'org:admin'])).toEqual([]);
  });

  it('derives status from revocation and expiry at a given time', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(statusOf({ revokedAt: null, expiresAt: null }, now)).toBe('active');
    expect(statusOf({ revokedAt: null, expiresAt: now }, now)).toBe('expired');
    expect(statusOf({ revokedAt: now, expiresAt: null }, now)).toBe('revoked');
  });
});
