/**
 * Which dormant keys a revoking pass spares (pure). A pass may revoke `org:admin` keys only while
 * another one stays: active, not selected by the pass, and not on its way out after a rotation
 * (its overlap ends on its own; the key that replaced it is the one meant to stay).
 */
import type { SpareReason } from './dormant.types.ts';

export type AdminKey = { id: string; rotating: boolean };
export type SpareCandidate = { id: string; created_at: Date; last_used_at: Date | null };

const lastSeen = (k: SpareCandidate): number => (k.last_used_at ?? k.created_at).getTime();

/** The keys to spare among `dormant` (the pass's selection, or the part of it that matters). */
export function sparedKeys<K extends SpareCandidate>(
  admins: readonly AdminKey[],
  dormant: readonly K[],
  authorKeyId: string | null,
): { key: K; reason: SpareReason }[] {
  const spared: { key: K; reason: SpareReason }[] = [];
  const author = authorKeyId === null ? undefined : dormant.find((k) => k.id === authorKeyId);
  if (author) spared.push({ key: author, reason: 'policy_author' });
  const selected = new Set(dormant.map((k) => k.id));
  if (author) selected.delete(author.id);
  const remains = admins.some((a) => !a.rotating && !selected.has(a.id));
  if (remains) return spared;
  // Keep the admin key most likely still held: not rotated away, then the most recently used
  // (or created), then the lowest id (deterministic, so the preview names the run's choice).
  const rotating = new Set(admins.filter((a) => a.rotating).map((a) => a.id));
  const keep = dormant
    .filter((k) => selected.has(k.id) && admins.some((a) => a.id === k.id))
    .sort(
      (a, b) =>
        Number(rotating.has(a.id)) - Number(rotating.has(b.id)) ||
        lastSeen(b) - lastSeen(a) ||
        (a.id < b.id ? -1 : 1),
    )[0];
  if (keep) spared.push({ key: keep, reason: 'last_admin_key' });
  return spared;
}
