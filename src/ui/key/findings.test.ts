import { describe, expect, it } from 'vitest';
import type { KeyUsage } from '../api.ts';
import { findingsOf } from './findings.ts';

const NOW = Date.parse('2026-12-02T12:00:00.000Z');
const iso = (msAgo: number) => new Date(NOW - msAgo).toISOString();
const HOUR = 3_600_000;

type Key = KeyUsage['key'];
type Totals = KeyUsage['totals'];
type Rotation = KeyUsage['rotation'];

function usage(parts: {
  key?: Partial<Key>;
  totals?: Partial<Totals>;
  rotation?: Partial<Rotation>;
}) {
  return {
    key: { status: 'active', revoked_at: null, expires_at: null, ...parts.key },
    totals: { denied_count: 0, last_denied_at: null, ...parts.totals },
    rotation: { previous: null, replaced_by: null, ...parts.rotation },
  } as unknown as KeyUsage;
}

type Previous = NonNullable<Rotation['previous']>;
const previous = (p: Partial<Previous>): Previous => ({
  key_id: 'old',
  name: 'billing',
  prefix: 'sk_live_old',
  status: 'active',
  rotated_at: iso(48 * HOUR),
  expires_at: iso(-5 * 24 * HOUR),
  revoked_at: null,
  requests_since_rotation: 0,
  last_used_at: null,
  last_used_ip: null,
  ...p,
});

describe('key page findings', () => {
  it('finds nothing on a quiet, unrotated, active key', () => {
    expect(findingsOf(usage({}), NOW)).toEqual([]);
  });

  it('calls out an old key used since the rotation, and when it stops working', () => {
    const found = findingsOf(
      usage({
        rotation: {
          previous: previous({ requests_since_rotation: 1204, last_used_at: iso(180_000) }),
        },
      }),
      NOW,
    );
    expect(found).toEqual([
      expect.objectContaining({
        kind: 'old-key-in-use',
        requests: 1204,
        stopsAt: iso(-5 * 24 * HOUR),
      }),
    ]);
  });

  it('turns to information once the old key no longer works (revoked, or past its overlap)', () => {
    for (const p of [
      previous({ requests_since_rotation: 3, last_used_at: iso(HOUR), status: 'revoked' }),
      previous({ requests_since_rotation: 3, last_used_at: iso(HOUR), expires_at: iso(60_000) }),
    ])
      expect(findingsOf(usage({ rotation: { previous: p } }), NOW)).toEqual([
        expect.objectContaining({ kind: 'old-key-used', requests: 3, lastUsedAt: iso(HOUR) }),
      ]);
  });

  it('decides "used since the rotation" by the last use, not by a count that rollups age out', () => {
    const pruned = previous({ requests_since_rotation: 0, last_used_at: iso(HOUR) });
    expect(findingsOf(usage({ rotation: { previous: pruned } }), NOW)[0]?.kind).toBe(
      'old-key-in-use',
    );
    const before = previous({ requests_since_rotation: 0, last_used_at: iso(49 * HOUR) });
    expect(findingsOf(usage({ rotation: { previous: before } }), NOW)[0]?.kind).toBe(
      'old-key-quiet',
    );
  });

  it('notes an old key unused since the rotation as information', () => {
    expect(findingsOf(usage({ rotation: { previous: previous({}) } }), NOW)).toEqual([
      expect.objectContaining({ kind: 'old-key-quiet', keyId: 'old' }),
    ]);
  });

  it('flags denied attempts after the revocation or expiry, first', () => {
    const tried = usage({
      key: { status: 'revoked', revoked_at: iso(5 * HOUR) },
      totals: { denied_count: 7, last_denied_at: iso(60_000) },
      rotation: {
        replaced_by: { key_id: 'new', name: 'n', prefix: 'p', rotated_at: iso(5 * HOUR) },
      },
    });
    expect(findingsOf(tried, NOW).map((f) => f.kind)).toEqual(['dead-key-tried', 'replaced']);
    const expired = usage({
      key: { status: 'expired', expires_at: iso(2 * HOUR) },
      totals: { denied_count: 1, last_denied_at: iso(HOUR) },
    });
    expect(findingsOf(expired, NOW)).toEqual([
      { kind: 'dead-key-tried', status: 'expired', deniedCount: 1, lastDeniedAt: iso(HOUR) },
    ]);
  });

  it('does not flag denials that all came before the revocation', () => {
    const before = usage({
      key: { status: 'revoked', revoked_at: iso(HOUR) },
      totals: { denied_count: 2, last_denied_at: iso(2 * HOUR) },
    });
    expect(findingsOf(before, NOW)).toEqual([]);
  });

  it('reports denied attempts of an active key (a missing scope) as information', () => {
    const scoped = usage({ totals: { denied_count: 4, last_denied_at: iso(HOUR) } });
    expect(findingsOf(scoped, NOW)).toEqual([
      { kind: 'denied', deniedCount: 4, lastDeniedAt: iso(HOUR) },
    ]);
  });
});
