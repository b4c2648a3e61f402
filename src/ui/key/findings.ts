/**
 * What the key page calls out: an old key still in use after a rotation, a revoked or expired
 * key still being tried, the key that replaced this one, denied attempts of an active key.
 * Pure (the page passes "now"), so each rule is unit-tested; findings.tsx renders them.
 */
import type { KeyUsage } from '../api.ts';

export type Finding =
  | {
      kind: 'old-key-in-use';
      keyId: string;
      name: string;
      prefix: string;
      requests: number;
      lastUsedAt: string;
      /** When the old key stops working (null: no expiry set). */
      stopsAt: string | null;
    }
  | {
      /** Used after the rotation, during its overlap, and no longer working: information. */
      kind: 'old-key-used';
      keyId: string;
      name: string;
      prefix: string;
      requests: number;
      lastUsedAt: string;
    }
  | { kind: 'old-key-quiet'; keyId: string; name: string; prefix: string; rotatedAt: string }
  | {
      kind: 'dead-key-tried';
      status: 'revoked' | 'expired';
      deniedCount: number;
      lastDeniedAt: string;
    }
  | { kind: 'denied'; deniedCount: number; lastDeniedAt: string }
  | { kind: 'replaced'; keyId: string; name: string; prefix: string; rotatedAt: string };

const after = (a: string | null, b: string | null): boolean =>
  a !== null && (b === null || Date.parse(a) > Date.parse(b));

/** The findings of a key's usage, the alarming ones first. */
export function findingsOf(usage: KeyUsage, now: number): Finding[] {
  const { key, totals, rotation } = usage;
  const found: Finding[] = [];
  const { previous, replaced_by: next } = rotation;
  if (previous) {
    const link = { keyId: previous.key_id, name: previous.name, prefix: previous.prefix };
    // Used since the rotation: by its last use, not by the count (rollups age out, a use does not).
    const lastUse = previous.last_used_at;
    const usedSince = lastUse !== null && Date.parse(lastUse) >= Date.parse(previous.rotated_at);
    const stillWorks =
      previous.status === 'active' &&
      (previous.expires_at === null || Date.parse(previous.expires_at) > now);
    const requests = previous.requests_since_rotation;
    // A warning only while acting on it helps: the old key still works and is still used.
    if (usedSince && stillWorks)
      found.push({
        kind: 'old-key-in-use',
        ...link,
        requests,
        lastUsedAt: lastUse,
        stopsAt: previous.expires_at,
      });
    else if (usedSince)
      found.push({ kind: 'old-key-used', ...link, requests, lastUsedAt: lastUse });
    else found.push({ kind: 'old-key-quiet', ...link, rotatedAt: previous.rotated_at });
  }
  const deadSince = key.status === 'revoked' ? key.revoked_at : key.expires_at;
  if (key.status !== 'active' && totals.last_denied_at && after(totals.last_denied_at, deadSince)) {
    found.unshift({
      kind: 'dead-key-tried',
      status: key.status,
      deniedCount: totals.denied_count,
      lastDeniedAt: totals.last_denied_at,
    });
  } else if (key.status === 'active' && totals.denied_count > 0 && totals.last_denied_at) {
    found.push({
      kind: 'denied',
      deniedCount: totals.denied_count,
      lastDeniedAt: totals.last_denied_at,
    });
  }
  if (next)
    found.push({
      kind: 'replaced',
      keyId: next.key_id,
      name: next.name,
      prefix: next.prefix,
      rotatedAt: next.rotated_at,
    });
  return found;
}
