/**
 * Dormant-key policies (SPEC §10): per org, notify about or revoke keys unused for N days. The
 * daily run, the preview and `keys dormant --revoke` select keys with one rule (the org usage
 * page's dormant flag), and every action is audited in the transaction that takes it.
 */
import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/logger.ts';
import { recordAudit, recordAudits, type AuditActor } from '../audit/audit.service.ts';
import { notifyKeyChanged } from '../keys/keys.queries.ts';
import { ADMIN_SCOPE, type KeyIdentity } from '../keys/keys.types.ts';
import * as q from './dormant.queries.ts';
import {
  MAX_AFTER_DAYS,
  MIN_AFTER_DAYS,
  type DormantAction,
  type DormantRule,
  type StoredPolicy,
} from './dormant.types.ts';

const DAY_MS = 86_400_000;
/** Keys acted on per transaction: bounded locks and audit inserts, whatever the org's size. */
const CHUNK = 500;
/** Time for a flushed batch's job to be inserted, past the flush interval. */
const SEND_MARGIN_MS = 500;

export type PolicyInput = Pick<
  StoredPolicy,
  'enabled' | 'after_days' | 'action' | 'exclude_environments' | 'exclude_scopes'
>;
export type PolicyView = Omit<StoredPolicy, 'updated_at'> & { updated_at: Date | null };
export type ActionPlan = { action: DormantAction; rule: DormantRule };
export type ActResult = { acted: q.DormantCandidate[]; skipped: string | null };

export type DormantPolicyDeps = {
  db: Database;
  clock: Clock;
  logger: Logger;
  /** The usage buffers' flush interval: an event reaches the queue within it. */
  flushIntervalMs: number;
  defaultDays: number;
  /** How long a run waits for usage to be complete up to its start before acting on nothing. */
  freshnessTimeoutMs: number;
};

/** The rule a policy (or `keys dormant` by hand) applies. */
export function planOf(policy: PolicyInput & Pick<StoredPolicy, 'acting_scopes'>): ActionPlan {
  return {
    action: policy.action,
    rule: {
      afterDays: policy.after_days,
      excludeEnvironments: policy.exclude_environments,
      excludeScopes: policy.exclude_scopes,
      // Notices are harmless; a revocation stays within what the policy's author could revoke.
      coveredBy: policy.action === 'revoke' ? policy.acting_scopes : null,
    },
  };
}

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
      const before = await q.findPolicy(trx, orgId);
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

  /** Every key `plan` selects now, least recently used first (nothing is locked or changed). */
  async function select(orgId: string, plan: ActionPlan, now = clock.now()) {
    const keys: q.DormantCandidate[] = [];
    const at = { now, before: new Date(now.getTime() - plan.rule.afterDays * DAY_MS) };
    for (;;) {
      const { rows } = await q
        .dormantCandidates(orgId, { ...plan.rule, action: plan.action }, at, {
          limit: CHUNK,
          ...(keys.length > 0 && { after: keys.at(-1) }),
        })
        .execute(db);
      keys.push(...rows);
      if (rows.length < CHUNK) return keys;
    }
  }

  /**
   * Waits until every usage event that happened before now is ingested: a key used a moment
   * ago must not look unused. Events reach the queue within one flush interval, so it waits
   * that long, then for the jobs queued until then. Returns why not, after the timeout.
   */
  async function usageComplete(): Promise<string | null> {
    const start = await q.databaseNow(db);
    const flushed = new Date(start.getTime() + deps.flushIntervalMs + SEND_MARGIN_MS);
    await new Promise((r) => setTimeout(r, deps.flushIntervalMs + SEND_MARGIN_MS));
    const deadline = Date.now() + deps.freshnessTimeoutMs;
    for (;;) {
      if (!(await q.usagePendingBefore(db, flushed))) return null;
      if (Date.now() >= deadline) {
        return `usage events queued before ${flushed.toISOString()} are not ingested yet`;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** One chunk: locks the keys the plan still selects, acts on them and audits each. */
  async function actOnChunk(orgId: string, plan: ActionPlan, actor: AuditActor) {
    const now = clock.now();
    const at = { now, before: new Date(now.getTime() - plan.rule.afterDays * DAY_MS) };
    return db.transaction().execute(async (trx) => {
      let { rows } = await q
        .dormantCandidates(orgId, { ...plan.rule, action: plan.action }, at, {
          limit: CHUNK,
          lock: true,
        })
        .execute(trx);
      if (rows.length === 0) return { acted: rows, locked: 0 };
      // Again, in a fresh snapshot now that the keys are locked: a use ingested since the
      // locking statement began (the totals are not locked) spares its key.
      const locked = rows.map((k) => k.id);
      const still = await q
        .dormantCandidates(orgId, { ...plan.rule, action: plan.action }, at, {
          limit: CHUNK,
          ids: locked,
        })
        .execute(trx);
      const ids = still.rows.map((k) => k.id);
      if (ids.length === 0) return { acted: [], locked: locked.length };
      rows = still.rows;
      const days = plan.rule.afterDays;
      if (plan.action === 'revoke') {
        await q.markRevokedByPolicy(trx, ids, now, `dormant: unused for ${days} days`);
        for (const id of ids) await notifyKeyChanged(trx, id);
      } else {
        await q.markNotified(trx, ids, now);
      }
      await recordAudits(
        trx,
        rows.map((k) => ({
          orgId,
          at: now,
          actor,
          action: plan.action === 'revoke' ? ('key.revoked' as const) : ('key.dormant' as const),
          target: { type: 'api_key' as const, id: k.id },
          details: {
            reason: 'dormant',
            prefix: k.prefix,
            after_days: days,
            last_used_at: k.last_used_at?.toISOString() ?? null,
          },
        })),
      );
      return { acted: rows, locked: locked.length };
    });
  }

  /** Acts on every key the plan selects now, once each, however many runs overlap. */
  async function act(
    orgId: string,
    plan: ActionPlan,
    actor: AuditActor,
    o: { usageChecked?: boolean } = {},
  ): Promise<ActResult> {
    const behind = o.usageChecked ? null : await usageComplete();
    if (behind) return { acted: [], skipped: behind };
    const acted: q.DormantCandidate[] = [];
    // Until a pass locks nothing: a pass whose keys were all used meanwhile acts on none.
    for (;;) {
      const chunk = await actOnChunk(orgId, plan, actor);
      acted.push(...chunk.acted);
      if (chunk.locked === 0) return { acted, skipped: null };
    }
  }

  /** The daily run: every enabled policy, one org after another. */
  async function runAll(): Promise<{ orgs: number; acted: number; skipped: number }> {
    const report = { orgs: 0, acted: 0, skipped: 0 };
    const orgs = await q.enabledPolicyOrgs(db);
    if (orgs.length === 0) return report;
    // Once for the whole run: every org's keys are judged on usage complete up to its start.
    const behind = await usageComplete();
    if (behind) {
      deps.logger.warn({ orgs: orgs.length, reason: behind }, 'dormant-key policies skipped');
      return { ...report, skipped: orgs.length };
    }
    for (const orgId of orgs) {
      const policy = await q.findPolicy(db, orgId);
      if (!policy?.enabled) continue;
      const result = await act(orgId, planOf(policy), { type: 'policy' }, { usageChecked: true });
      report.orgs++;
      report.acted += result.acted.length;
      if (result.skipped) {
        report.skipped++;
        deps.logger.warn({ org_id: orgId, reason: result.skipped }, 'dormant-key policy skipped');
      }
    }
    return report;
  }

  return { get, put, select, act, runAll, defaults };
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
  return { ...auditedPolicy(p), updated_at: p.updated_at?.toISOString() ?? null };
}

export type DormantPolicies = ReturnType<typeof createDormantPolicies>;
