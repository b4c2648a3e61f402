/**
 * Dormant-key policies (SPEC §10): per org, notify about or revoke keys unused for N days. The
 * daily run, the preview and `keys dormant --revoke` select keys with one rule (the org usage
 * page's dormant flag; dormant.select.ts), and every action is audited in the transaction that
 * takes it (dormant.run.ts). This module saves and previews policies and composes the run.
 */
import { recordAudit } from '../audit/audit.service.ts';
import { lockOrg } from '../keys/keys.queries.ts';
import { ADMIN_SCOPE, type KeyIdentity } from '../keys/keys.types.ts';
import { assertMayReplace, planOf, type ActionPlan } from './dormant.authority.ts';
import * as q from './dormant.queries.ts';
import { createDormantRun, type DormantRunDeps } from './dormant.run.ts';
import { selectKeys } from './dormant.select.ts';
import {
  MAX_AFTER_DAYS,
  MIN_AFTER_DAYS,
  type PolicyInput,
  type PolicyView,
} from './dormant.types.ts';

export { operatorPlan, type ActionPlan } from './dormant.authority.ts';
export type { ActResult } from './dormant.run.ts';
export type { SparedKey } from './dormant.select.ts';
export type { PolicyInput, PolicyView } from './dormant.types.ts';

export type DormantPolicyDeps = DormantRunDeps & { defaultDays: number };

export function createDormantPolicies(deps: DormantPolicyDeps) {
  const { db, clock } = deps;
  const defaults = (): PolicyView => ({
    enabled: false,
    after_days: Math.min(MAX_AFTER_DAYS, Math.max(MIN_AFTER_DAYS, deps.defaultDays)),
    action: 'notify',
    exclude_environments: [],
    exclude_scopes: [],
    acting_scopes: null,
    updated_at: null,
    updated_by_key_id: null,
    last_run_at: null,
    last_run: null,
  });

  async function get(orgId: string): Promise<PolicyView> {
    return (await q.findPolicy(db, orgId)) ?? defaults();
  }

  async function put(caller: KeyIdentity, orgId: string, input: PolicyInput) {
    const now = clock.now();
    const policy = {
      ...input,
      exclude_environments: [...new Set(input.exclude_environments)],
      exclude_scopes: [...new Set(input.exclude_scopes)],
      acting_scopes: caller.scopes.includes(ADMIN_SCOPE) ? null : [...caller.scopes],
    };
    await db.transaction().execute(async (trx) => {
      // Saves of one org's policy in turn: each checks the author of the policy it replaces.
      await lockOrg(trx, orgId);
      const before = await assertMayReplace(trx, caller, orgId, now);
      await q.savePolicy(trx, orgId, policy, { at: now, keyId: caller.id });
      await recordAudit(trx, {
        orgId,
        at: now,
        actor: { type: 'key', keyId: caller.id },
        action: 'policy.updated',
        target: { type: 'policy', id: null },
        details: {
          policy: 'dormant-keys',
          from: before ? auditedPolicy(before) : null,
          to: auditedPolicy(policy),
        },
      });
    });
    return get(orgId);
  }

  /** Every key `plan` selects now, least recently used first, and those it spares (no lock). */
  const select = (orgId: string, plan: ActionPlan, now = clock.now()) =>
    selectKeys(db, orgId, plan, now);

  /** The preview: what a run would do now. */
  async function preview(orgId: string, now = clock.now()) {
    const policy = await get(orgId);
    const plan = await planOf(db, orgId, policy, now);
    const chosen = policy.enabled ? await select(orgId, plan, now) : { keys: [], spared: [] };
    return { policy, plan, ...chosen };
  }

  return { get, put, select, preview, ...createDormantRun(deps), defaults };
}

/** What the audit trail records of a policy. */
function auditedPolicy(p: PolicyInput) {
  return {
    enabled: p.enabled,
    after_days: p.after_days,
    action: p.action,
    exclude_environments: p.exclude_environments,
    exclude_scopes: p.exclude_scopes,
  };
}

/** The policy as the API shows it (no internal column). */
export function publicPolicy(p: PolicyView) {
  return {
    ...auditedPolicy(p),
    updated_at: p.updated_at?.toISOString() ?? null,
    last_run:
      p.last_run_at && p.last_run ? { at: p.last_run_at.toISOString(), ...p.last_run } : null,
  };
}

export type DormantPolicies = ReturnType<typeof createDormantPolicies>;
