/**
 * The acting side of the dormant-key policies: one org's pass in chunks (`act`, also behind
 * `keys dormant --revoke`) and the daily run over every enabled policy (`runAll`). Every action
 * is audited in the transaction that takes it.
 */
import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/logger.ts';
import { recordAudit, recordAudits, type AuditActor } from '../audit/audit.service.ts';
import { notifyKeyChanged } from '../keys/keys.queries.ts';
import { planOf, recheckPlan, type ActionPlan } from './dormant.authority.ts';
import * as q from './dormant.queries.ts';
import { atOf, CHUNK, spares, type SparedKey } from './dormant.select.ts';
import {
  SPARE_REASONS,
  type DormantAction,
  type PolicyRun,
  type StoredPolicy,
} from './dormant.types.ts';
import { whenUsageComplete } from './usage-freshness.ts';

export type ActResult = {
  acted: q.DormantCandidate[];
  spared: SparedKey[];
  skipped: string | null;
};

export type DormantRunDeps = {
  db: Database;
  clock: Clock;
  logger: Logger;
  /** The usage buffers' flush interval: an event reaches the queue within it. */
  flushIntervalMs: number;
  /** How long a run waits for usage to be complete up to its start before acting on nothing. */
  freshnessTimeoutMs: number;
};

export function createDormantRun(deps: DormantRunDeps) {
  const { db, clock } = deps;

  /** Spared keys get a `key.dormant` notice (details.spared) once per dormant spell. */
  async function recordSpared(
    trx: Database,
    orgId: string,
    plan: ActionPlan,
    actor: AuditActor,
    spared: SparedKey[],
    now: Date,
  ) {
    const due = spared.filter(
      (k) => !k.dormant_notified_at || k.dormant_notified_at < (k.last_used_at ?? k.created_at),
    );
    if (due.length === 0) return;
    await q.markNotified(
      trx,
      orgId,
      due.map((k) => k.id),
      now,
    );
    await recordAudits(
      trx,
      due.map((k) => ({
        ...auditOf(orgId, plan, actor, k, 'key.dormant', now),
        details: {
          ...detailsOf(plan, k),
          spared: k.reason,
          spared_because: SPARE_REASONS[k.reason],
        },
      })),
    );
  }

  /**
   * One chunk: locks the keys the plan still selects, acts on them and audits each. With the
   * author key locked, its authority is read again: when it changed since the plan was made (a
   * revocation or narrowing committed mid-run), the chunk acts on nothing and returns the plan
   * the remaining chunks follow.
   */
  async function actOnChunk(orgId: string, plan: ActionPlan, actor: AuditActor) {
    const now = clock.now();
    const at = atOf(plan, now);
    const rule = { ...plan.rule, action: plan.action };
    return db.transaction().execute(async (trx) => {
      const spared = await spares(trx, orgId, plan, at, true);
      const current = await recheckPlan(trx, orgId, plan, now);
      if (current !== plan) return { acted: [], spared: [], locked: 0, plan: current };
      await recordSpared(trx, orgId, plan, actor, spared, now);
      const exclude = spared.map((k) => k.id);
      const { rows } = await q
        .dormantCandidates(orgId, rule, at, { limit: CHUNK, lock: true, exclude })
        .execute(trx);
      if (rows.length === 0) return { acted: rows, spared, locked: 0, plan };
      // Again, in a fresh snapshot now that the keys are locked: a use ingested since the
      // locking statement began (the totals are not locked) spares its key.
      const locked = rows.map((k) => k.id);
      const still = await q
        .dormantCandidates(orgId, rule, at, { limit: CHUNK, ids: locked })
        .execute(trx);
      const ids = still.rows.map((k) => k.id);
      if (ids.length === 0) return { acted: [], spared, locked: locked.length, plan };
      if (plan.action === 'revoke') {
        const reason = `dormant: unused for ${plan.rule.afterDays} days`;
        await q.markRevokedByPolicy(trx, orgId, ids, now, reason);
        for (const id of ids) await notifyKeyChanged(trx, id);
      } else {
        await q.markNotified(trx, orgId, ids, now);
      }
      const action = plan.action === 'revoke' ? 'key.revoked' : 'key.dormant';
      await recordAudits(
        trx,
        still.rows.map((k) => auditOf(orgId, plan, actor, k, action, now)),
      );
      return { acted: still.rows, spared, locked: locked.length, plan };
    });
  }

  /**
   * Acts on every key the plan selects now, once each, however many runs overlap. `onDowngrade`:
   * the author lost the authority mid-run (the remaining chunks only notify).
   */
  async function act(
    orgId: string,
    planned: ActionPlan,
    actor: AuditActor,
    o: {
      usageChecked?: boolean;
      onDowngrade?: (why: string) => Promise<void>;
      /** Each chunk's keys, as it commits: a run that fails later still counts them. */
      onActed?: (n: number) => void;
    } = {},
  ): Promise<ActResult> {
    if (!o.usageChecked) {
      const { skipped } = await whenUsageComplete(freshness, [orgId], () => Promise.resolve());
      if (skipped[0]) return { acted: [], spared: [], skipped: skipped[0].reason };
    }
    const acted: q.DormantCandidate[] = [];
    let plan = planned;
    // Until a pass locks nothing: a pass whose keys were all used meanwhile acts on none.
    for (;;) {
      const chunk = await actOnChunk(orgId, plan, actor);
      acted.push(...chunk.acted);
      o.onActed?.(chunk.acted.length);
      if (chunk.plan !== plan) {
        plan = chunk.plan;
        if (plan.downgraded) await o.onDowngrade?.(plan.downgraded);
        continue;
      }
      if (chunk.locked === 0) return { acted, spared: chunk.spared, skipped: null };
    }
  }

  /** A downgraded policy is audited once per saved version and reason (logged every run). */
  async function noteDowngrade(orgId: string, policy: StoredPolicy, why: string) {
    deps.logger.warn({ org_id: orgId, reason: why }, 'dormant-key policy downgraded');
    if (await q.downgradeAudited(db, orgId, policy.updated_at, why)) return;
    await recordAudit(db, {
      orgId,
      at: clock.now(),
      actor: { type: 'policy' },
      action: 'policy.downgraded',
      target: { type: 'policy', id: null },
      details: { policy: 'dormant-keys', from: 'revoke', to: 'notify', reason: why },
    });
  }

  const freshness = {
    db,
    flushIntervalMs: deps.flushIntervalMs,
    timeoutMs: deps.freshnessTimeoutMs,
  };

  /**
   * The daily run: every enabled policy. Each org acts as soon as its own usage up to the run's
   * start is ingested; an org whose usage is still behind at the timeout, or has events in
   * dead-lettered jobs, is skipped that day, and so is an org whose run fails (logged: one org's
   * failure stops no other).
   */
  async function runAll(): Promise<{ orgs: number; acted: number; skipped: number }> {
    const report = { orgs: 0, acted: 0, skipped: 0 };
    const orgs = await q.enabledPolicyOrgs(db);
    if (orgs.length === 0) return report;
    const { skipped } = await whenUsageComplete(freshness, orgs, async (orgId) => {
      const acted = await runOrg(orgId);
      if (acted === null) return;
      if (acted.failed) report.skipped++;
      else report.orgs++;
      report.acted += acted.count;
    });
    for (const { orgId, reason } of skipped) {
      report.skipped++;
      deps.logger.warn({ org_id: orgId, reason }, 'dormant-key policy skipped');
      await recordRun(orgId, { acted: 0, spared: 0, downgraded: null, skipped: reason });
    }
    return report;
  }

  /**
   * What the day's runs did, on the policy (the Policies page shows it): a second run the same
   * UTC day (a retry, an overlap) adds to the first instead of hiding it. Its own failure is
   * logged, never taken for the run's.
   */
  async function recordRun(
    orgId: string,
    run: Omit<PolicyRun, 'action'> & { action?: DormantAction },
  ) {
    try {
      const policy = await q.findPolicy(db, orgId);
      const at = clock.now();
      const before = policy?.last_run_at && policy.last_run;
      const sameDay =
        before && policy.last_run_at?.toISOString().slice(0, 10) === at.toISOString().slice(0, 10);
      await q.recordRun(db, orgId, at, {
        ...run,
        action: run.action ?? policy?.action ?? 'notify',
        acted: run.acted + (sameDay ? before.acted : 0),
      });
    } catch (error) {
      deps.logger.error({ org_id: orgId, err: error }, 'dormant-key run not recorded');
    }
  }

  /**
   * One org's part of the daily run: the keys it acted on, and whether it failed midway (null:
   * disabled meanwhile). A failure is logged and recorded with what was done before it.
   */
  async function runOrg(orgId: string): Promise<{ count: number; failed: boolean } | null> {
    let count = 0;
    let downgraded: string | null = null;
    let action: DormantAction | undefined;
    try {
      const policy = await q.findPolicy(db, orgId);
      if (!policy?.enabled) return null;
      const plan = await planOf(db, orgId, policy, clock.now());
      action = plan.action;
      downgraded = plan.downgraded;
      if (plan.downgraded) await noteDowngrade(orgId, policy, plan.downgraded);
      const onDowngrade = async (why: string) => {
        downgraded = why;
        action = 'notify';
        await noteDowngrade(orgId, policy, why);
      };
      const onActed = (n: number) => (count += n);
      const result = await act(
        orgId,
        plan,
        { type: 'policy' },
        { usageChecked: true, onDowngrade, onActed },
      );
      await recordRun(orgId, {
        action,
        acted: count,
        spared: result.spared.length,
        downgraded,
        skipped: null,
      });
      return { count, failed: false };
    } catch (error) {
      deps.logger.error({ org_id: orgId, err: error }, 'dormant-key policy run failed');
      await recordRun(orgId, {
        ...(action && { action }),
        acted: count,
        spared: 0,
        downgraded,
        skipped: `the run failed after acting on ${count} keys (see the worker logs)`,
      });
      return { count, failed: true };
    }
  }

  return { act, runAll };
}

/** The audit entry of one action on one key. */
function auditOf(
  orgId: string,
  plan: ActionPlan,
  actor: AuditActor,
  k: q.DormantCandidate,
  action: 'key.revoked' | 'key.dormant',
  now: Date,
) {
  return {
    orgId,
    at: now,
    actor,
    action,
    target: { type: 'api_key' as const, id: k.id },
    details: detailsOf(plan, k),
  };
}

function detailsOf(plan: ActionPlan, k: q.DormantCandidate): Record<string, unknown> {
  return {
    reason: 'dormant',
    prefix: k.prefix,
    after_days: plan.rule.afterDays,
    last_used_at: k.last_used_at?.toISOString() ?? null,
    ...(plan.downgraded && { downgraded: plan.downgraded }),
  };
}
