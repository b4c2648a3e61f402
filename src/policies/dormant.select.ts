/**
 * Which keys a dormant-key pass selects and which it spares: the one rule that the preview,
 * `keys dormant` and every chunk of a run (dormant.run.ts) apply.
 */
import type { Database } from '../platform/db.ts';
import type { ActionPlan } from './dormant.authority.ts';
import * as q from './dormant.queries.ts';
import { sparedKeys } from './dormant.spare.ts';
import type { SpareReason } from './dormant.types.ts';

export const DAY_MS = 86_400_000;
/** Keys acted on per transaction: bounded locks and audit inserts, whatever the org's size. */
export const CHUNK = 500;

export type SparedKey = q.DormantCandidate & { reason: SpareReason };
export type PassTime = { now: Date; before: Date };

export const atOf = (plan: ActionPlan, now: Date): PassTime => ({
  now,
  before: new Date(now.getTime() - plan.rule.afterDays * DAY_MS),
});

/**
 * The dormant keys a revoking pass leaves alone (dormant.spare.ts). `lock`: the org's admin
 * keys, then the author, are locked first, so concurrent passes and revocations by hand
 * serialise on them and the last admin key is never revoked by two passes counting each other.
 */
export async function spares(
  ex: Database,
  orgId: string,
  plan: ActionPlan,
  at: PassTime,
  lock: boolean,
): Promise<SparedKey[]> {
  if (plan.action !== 'revoke') return [];
  const admins = (await q.activeAdminKeys(orgId, at.now, lock).execute(ex)).rows;
  const author = plan.authorKeyId;
  if (lock && author) await q.lockKey(ex, orgId, author);
  const ids = [...new Set([...admins.map((a) => a.id), ...(author ? [author] : [])])];
  if (ids.length === 0) return [];
  const { rows } = await q
    .dormantCandidates(orgId, { ...plan.rule, action: plan.action }, at, {
      ids,
      limit: ids.length,
    })
    .execute(ex);
  // An admin key counts as staying only if it outlasts the policy's days from now, so at least
  // past the next daily run (a key expiring within the hour would leave the org no admin).
  const safeUntil = new Date(at.now.getTime() + plan.rule.afterDays * DAY_MS);
  return sparedKeys(admins, rows, author, safeUntil).map((s) => ({ ...s.key, reason: s.reason }));
}

/** Every key `plan` selects at `now`, least recently used first, and those it spares (no lock). */
export async function selectKeys(db: Database, orgId: string, plan: ActionPlan, now: Date) {
  const keys: q.DormantCandidate[] = [];
  const at = atOf(plan, now);
  const spared = await spares(db, orgId, plan, at, false);
  const exclude = spared.map((k) => k.id);
  for (;;) {
    const { rows } = await q
      .dormantCandidates(orgId, { ...plan.rule, action: plan.action }, at, {
        limit: CHUNK,
        exclude,
        ...(keys.length > 0 && { after: keys.at(-1) }),
      })
      .execute(db);
    keys.push(...rows);
    if (rows.length < CHUNK) return { keys, spared };
  }
}
