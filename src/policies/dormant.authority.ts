/**
 * A policy's authority (issue 18): a policy acts with the authority of the key that saved it as
 * that key is now, and replacing a policy needs that authority. One rule, the one that governs
 * revoking by hand (the caller must hold every scope of what it touches).
 */
import type { Database } from '../platform/db.ts';
import { AppError } from '../platform/errors.ts';
import {
  ADMIN_SCOPE,
  missingScopes,
  ungrantableScopes,
  type KeyIdentity,
} from '../keys/keys.types.ts';
import * as q from './dormant.queries.ts';
import type { DormantAction, DormantRule, PolicyInput, PolicyView } from './dormant.types.ts';

export type ActionPlan = {
  action: DormantAction;
  rule: DormantRule;
  /** The key whose authority a policy acts with, as of now (null: the operator, by hand). */
  authorKeyId: string | null;
  /** Why a revoking policy only notifies now (its author lost the authority), else null. */
  downgraded: string | null;
};

/** What the author of a policy may revoke now: `covers` (null: every key), or why nothing. */
type Authority = { keyId: string; covers: string[] | null } | { lost: string };

const ruleOf = (policy: PolicyInput, coveredBy: string[] | null): DormantRule => ({
  afterDays: policy.after_days,
  excludeEnvironments: policy.exclude_environments,
  excludeScopes: policy.exclude_scopes,
  coveredBy,
});

/** `keys dormant --revoke`: the operator reaches every key; the policy's exclusions hold. */
export function operatorPlan(policy: PolicyInput): ActionPlan {
  return { action: 'revoke', rule: ruleOf(policy, null), authorKeyId: null, downgraded: null };
}

/**
 * The authority of the key that saved the policy (or of the key that replaced it by rotation)
 * as it is now: an active org:admin key reaches every key, an active key holding keys:write
 * the keys within its scopes, anything else nothing.
 */
async function authorityOf(
  ex: Database,
  orgId: string,
  keyId: string | null,
  now: Date,
): Promise<Authority> {
  if (keyId === null) return { lost: 'the policy has no author key' };
  const key = await q.authorKey(ex, orgId, keyId, now);
  if (!key) return { lost: 'the author key no longer exists' };
  if (key.revoked_at) return { lost: 'the author key was revoked' };
  if (key.expires_at && key.expires_at <= now) return { lost: 'the author key expired' };
  if (key.scopes.includes(ADMIN_SCOPE)) return { keyId: key.id, covers: null };
  if (missingScopes(key.scopes, ['keys:write']).length > 0) {
    return { lost: 'the author key no longer holds keys:write' };
  }
  return { keyId: key.id, covers: key.scopes };
}

/** What the policy does at a run now: a revoking policy acts within its author's authority. */
export async function planOf(
  ex: Database,
  orgId: string,
  policy: PolicyView,
  now: Date,
): Promise<ActionPlan> {
  const notify = (downgraded: string | null): ActionPlan => ({
    action: 'notify',
    rule: ruleOf(policy, null),
    authorKeyId: null,
    downgraded,
  });
  if (policy.action === 'notify') return notify(null);
  const authority = await authorityOf(ex, orgId, policy.updated_by_key_id, now);
  if ('lost' in authority) return notify(downgradeOf(authority));
  return {
    action: 'revoke',
    rule: ruleOf(policy, authority.covers),
    authorKeyId: authority.keyId,
    downgraded: null,
  };
}

/**
 * `plan` as its author's authority allows at `now`, read again inside a pass's transaction once
 * the author key is locked: a revocation or narrowing that committed since the run began applies
 * to the chunks that follow. The same plan when nothing changed.
 */
export async function recheckPlan(
  trx: Database,
  orgId: string,
  plan: ActionPlan,
  now: Date,
): Promise<ActionPlan> {
  if (plan.action !== 'revoke' || plan.authorKeyId === null) return plan;
  const authority = await authorityOf(trx, orgId, plan.authorKeyId, now);
  if ('lost' in authority) {
    const rule = { ...plan.rule, coveredBy: null };
    return { action: 'notify', rule, authorKeyId: null, downgraded: downgradeOf(authority) };
  }
  const same = (a: string[] | null, b: string[] | null) =>
    a === b || (a !== null && b !== null && [...a].sort().join() === [...b].sort().join());
  if (authority.keyId === plan.authorKeyId && same(authority.covers, plan.rule.coveredBy)) {
    return plan;
  }
  return {
    ...plan,
    rule: { ...plan.rule, coveredBy: authority.covers },
    authorKeyId: authority.keyId,
  };
}

const downgradeOf = (a: { lost: string }) => `${a.lost}: revoke runs as notify`;

/**
 * Replacing a policy needs the authority it acts with now: every scope of its author key (all
 * of them, org:admin included, for an admin's policy). A policy whose author lost its authority
 * acts with none, and any keys:write key may replace it. Returns the policy replaced.
 */
export async function assertMayReplace(
  trx: Database,
  caller: KeyIdentity,
  orgId: string,
  now: Date,
) {
  const before = await q.findPolicy(trx, orgId);
  if (!before || before.updated_by_key_id === caller.id) return before;
  const authority = await authorityOf(trx, orgId, before.updated_by_key_id, now);
  if ('lost' in authority) return before;
  const denied = ungrantableScopes(caller.scopes, authority.covers ?? [ADMIN_SCOPE]);
  if (denied.length > 0) {
    throw new AppError('insufficient_scope', {
      detail: `the policy was saved by a key holding scopes this key does not hold (${denied.join(', ')}); replacing it needs them`,
    });
  }
  return before;
}
