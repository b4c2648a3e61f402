/**
 * Which dormant keys a revoking pass spares (pure). A pass may revoke `org:admin` keys only while
 * another one stays: active, not selected by the pass, not on its way out after a rotation (its
 * overlap ends on its own; the key that replaced it is the one meant to stay), and not expiring
 * before `safeUntil` (the run's time plus the policy's days: a key about to expire stays for
 * minutes, and an org whose only remaining admin key then expires is locked out).
 */
import type { SpareReason } from './dormant.types.ts';

export type AdminKey = { id: string; rotating: boolean; expires_at: Date | null };
export type SpareCandidate = { id: string; created_at: Date; last_used_at: Date | null };

const lastSeen = (k: SpareCandidate): number => (k.last_used_at ?? k.created_at).getTime();
const expiry = (a: AdminKey | undefined): number =>
  a?.expires_at ? a.expires_at.getTime() : Number.POSITIVE_INFINITY;

/** The keys to spare among `dormant` (the pass's selection, or the part of it that matters). */
export function sparedKeys<K extends SpareCandidate>(
  admins: readonly AdminKey[],
  dormant: readonly K[],
  authorKeyId: string | null,
  safeUntil: Date,
): { key: K; reason: SpareReason }[] {
  const spared: { key: K; reason: SpareReason }[] = [];
  const author = authorKeyId === null ? undefined : dormant.find((k) => k.id === authorKeyId);
  if (author) spared.push({ key: author, reason: 'policy_author' });
  const selected = new Set(dormant.map((k) => k.id));
  if (author) selected.delete(author.id);
  const lasting = (a: AdminKey) => a.expires_at === null || a.expires_at > safeUntil;
  const remains = admins.some((a) => !a.rotating && !selected.has(a.id) && lasting(a));
  if (remains) return spared;
  // Keep the admin key most likely still held longest: not rotated away, no expiry (else the
  // latest), then the most recently used (or created), then the lowest id (deterministic, so the
  // preview names the run's choice).
  const byId = new Map(admins.map((a) => [a.id, a]));
  const rotating = (k: K) => Number(byId.get(k.id)?.rotating ?? false);
  const keep = dormant
    .filter((k) => selected.has(k.id) && byId.has(k.id))
    .sort(
      (a, b) =>
        rotating(a) - rotating(b) ||
        Math.sign(expiry(byId.get(b.id)) - expiry(byId.get(a.id))) ||
        lastSeen(b) - lastSeen(a) ||
        (a.id < b.id ? -1 : 1),
    )[0];
  if (keep) spared.push({ key: keep, reason: 'last_admin_key' });
  return spared;
}
