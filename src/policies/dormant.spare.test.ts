import { describe, expect, it } from 'vitest';
import { sparedKeys, type AdminKey } from './dormant.spare.ts';

const NOW = Date.parse('2026-12-01T00:00:00Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const safeUntil = new Date(NOW + 7 * DAY);

const admin = (id: string, expiresInMs: number | null, rotating = false): AdminKey => ({
  id,
  rotating,
  expires_at: expiresInMs === null ? null : new Date(NOW + expiresInMs),
});
const dormant = (id: string, lastSeenDaysAgo: number) => ({
  id,
  created_at: new Date(NOW - 400 * DAY),
  last_used_at: new Date(NOW - lastSeenDaysAgo * DAY),
});
const kept = (s: ReturnType<typeof sparedKeys>) => s.map((x) => [x.key.id, x.reason]);

describe('sparedKeys', () => {
  it('does not count an admin key expiring before the policy’s days as the one that stays', () => {
    // A, in daily use, expires in an hour; B, the unused break-glass key, never expires.
    const admins = [admin('a', HOUR), admin('b', null)];
    expect(kept(sparedKeys(admins, [dormant('b', 60)], null, safeUntil))).toEqual([
      ['b', 'last_admin_key'],
    ]);
  });

  it('lets the pass revoke a dormant admin key while one outlasting the days stays', () => {
    const admins = [admin('a', 30 * DAY), admin('b', null)];
    expect(sparedKeys(admins, [dormant('b', 60)], null, safeUntil)).toEqual([]);
  });

  it('keeps the dormant admin key without expiry, else the one expiring last', () => {
    const never = [admin('a', 2 * DAY), admin('b', null), admin('c', 3 * DAY)];
    const keys = [dormant('a', 10), dormant('b', 90), dormant('c', 20)];
    expect(kept(sparedKeys(never, keys, null, safeUntil))).toEqual([['b', 'last_admin_key']]);
    const all = [admin('a', 2 * DAY), admin('b', HOUR), admin('c', 3 * DAY)];
    expect(kept(sparedKeys(all, keys, null, safeUntil))).toEqual([['c', 'last_admin_key']]);
  });

  it('prefers a key not rotated away over any expiry, and the most recently seen on a tie', () => {
    const admins = [admin('a', null, true), admin('b', DAY), admin('c', DAY)];
    const keys = [dormant('a', 10), dormant('b', 50), dormant('c', 40)];
    expect(kept(sparedKeys(admins, keys, null, safeUntil))).toEqual([['c', 'last_admin_key']]);
  });
});
