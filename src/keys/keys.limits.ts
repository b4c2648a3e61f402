/**
 * Changes to a key's limits inside the key's transaction (SPEC §11). Rate limits and the quota
 * belong to what they count against, the limits subject shared by a key and its rotations, so a
 * change is made for all of them and every one is announced.
 */
import type { Database } from '../platform/db.ts';
import { AppError } from '../platform/errors.ts';
import { policiesToJson } from '../limits/key-limits.ts';
import type { QuotaConfig, RatePolicy } from '../limits/limits.types.ts';
import { deleteQuota, saveQuota } from '../limits/quota.queries.ts';
import * as q from './keys.limits.queries.ts';
import type { ApiKey, KeyIdentity } from './keys.types.ts';

/** PATCH of a quota: null removes it; `remaining` sets what is left from now on. */
export type QuotaPatch = {
  limit?: number;
  refill?: QuotaConfig['refill'];
  remaining?: number;
} | null;

export type LimitsPatch = {
  allowedIps?: string[];
  rateLimits?: RatePolicy[];
  quota?: QuotaPatch;
};

/**
 * A key may not change the limits it is itself held to (its own, or those it shares with the
 * keys of its rotation): a capped key holding keys:write could otherwise lift its own cap.
 */
export async function assertNotOwnLimits(
  trx: Database,
  caller: KeyIdentity,
  target: ApiKey,
  patch: LimitsPatch,
): Promise<void> {
  const touches =
    patch.rateLimits !== undefined || patch.allowedIps !== undefined || patch.quota !== undefined;
  if (!touches || (await q.limitsSubjectOf(trx, caller.orgId, caller.id)) !== target.limitsId)
    return;
  throw new AppError('insufficient_scope', {
    detail: 'a key cannot change its own limits (allowed_ips, rate_limits, quota); use another key',
  });
}

/** The quota a PATCH asks for, merged with the key's current one. */
function mergedQuota(before: ApiKey, patch: NonNullable<QuotaPatch>): QuotaConfig {
  const limit = patch.limit ?? before.quota?.limit;
  if (limit === undefined) {
    throw new AppError('validation_failed', {
      detail: 'this key has no quota: give quota.limit to set one',
      errors: [{ path: 'body.quota.limit', message: 'required for a key without a quota' }],
    });
  }
  const refill = patch.refill !== undefined ? patch.refill : (before.quota?.refill ?? null);
  const bad = (path: string, message: string) =>
    new AppError('validation_failed', {
      detail: `${path}: ${message}`,
      errors: [{ path, message }],
    });
  if (patch.remaining !== undefined && patch.remaining > limit) {
    throw bad('body.quota.remaining', 'must not exceed the quota limit');
  }
  if (refill && refill.amount > limit) {
    throw bad('body.quota.refill.amount', 'must not exceed the quota limit');
  }
  return { limit, refill };
}

/** Sets the shared rate limits and quota; returns the other keys of the subject to announce. */
export async function applyLimits(
  trx: Database,
  orgId: string,
  before: ApiKey,
  patch: LimitsPatch,
): Promise<string[]> {
  const others = new Set<string>();
  if (patch.rateLimits !== undefined) {
    for (const id of await q.setRateLimits(trx, orgId, before.limitsId, patch.rateLimits)) {
      others.add(id);
    }
  }
  if (patch.quota !== undefined) {
    if (patch.quota === null) await deleteQuota(trx, before.limitsId);
    else {
      const config = mergedQuota(before, patch.quota);
      await saveQuota(trx, orgId, before.limitsId, config, patch.quota.remaining);
    }
    for (const id of await q.keysOfSubject(trx, orgId, before.limitsId)) others.add(id);
  }
  others.delete(before.id);
  return [...others];
}

/** The audit's before and after of the limits a PATCH changed. */
export function limitsChanges(
  before: ApiKey,
  patch: LimitsPatch,
): Record<string, { from: unknown; to: unknown }> {
  const out: Record<string, { from: unknown; to: unknown }> = {};
  if (patch.allowedIps !== undefined) {
    out.allowed_ips = { from: before.allowedIps, to: patch.allowedIps };
  }
  if (patch.rateLimits !== undefined) {
    out.rate_limits = {
      from: policiesToJson(before.rateLimits),
      to: policiesToJson(patch.rateLimits),
    };
  }
  if (patch.quota !== undefined) out.quota = { from: before.quota, to: patch.quota };
  return out;
}
