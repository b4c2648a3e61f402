import { Router, type Request } from 'express';
import type { Keytrail } from '../../keytrail.ts';
import { AppError } from '../../platform/errors.ts';
import { publicPolicy } from '../../policies/dormant.service.ts';
import { SPARE_REASONS } from '../../policies/dormant.types.ts';
import { nextMaintenanceRun } from '../../usage/usage.jobs.ts';
import { DormantPolicyBody } from '../policy.schemas.ts';
import { OrgIdParams, RateLimitsBody } from '../schemas.ts';
import { policiesToJson } from '../../limits/key-limits.ts';
import { parseInput } from '../validate.ts';
import { readShare } from '../middleware/read-share.ts';

const BASE = '/api/orgs/:orgId/policies/dormant-keys';
const RATE_LIMITS = '/api/orgs/:orgId/policies/rate-limits';

function orgOf(req: Request): string {
  return parseInput(OrgIdParams, req.params, 'path').orgId;
}

/** GET/PUT the org's dormant-key policy and preview its next run (SPEC §10). */
export function policiesRoutes(kt: Keytrail): Router {
  const router = Router();
  const can = (scope: string) => kt.requireKey({ orgParam: 'orgId', scopes: [scope] });
  const policies = kt.dormantPolicies;

  router.get(BASE, can('keys:read'), async (req, res) => {
    res.json(publicPolicy(await policies.get(orgOf(req))));
  });

  router.put(BASE, can('keys:write'), async (req, res) => {
    if (!req.apiKey) throw new AppError('unauthenticated');
    const body = parseInput(DormantPolicyBody, req.body ?? {}, 'body');
    const saved = await policies.put(req.apiKey, orgOf(req), {
      enabled: body.enabled,
      after_days: body.after_days,
      action: body.action,
      exclude_environments: body.exclude_environments ?? [],
      exclude_scopes: body.exclude_scopes ?? [],
    });
    res.json(publicPolicy(saved));
  });

  // A preview reads every key's rollups: an expensive read, under the org's read share.
  router.get(RATE_LIMITS, can('keys:read'), async (req, res) => {
    res.json({ rate_limits: policiesToJson(await kt.rateDefaults.get(orgOf(req))) });
  });

  router.put(RATE_LIMITS, can('keys:write'), async (req, res) => {
    if (!req.apiKey) throw new AppError('unauthenticated');
    const body = parseInput(RateLimitsBody, req.body ?? {}, 'body');
    const saved = await kt.rateDefaults.put(req.apiKey, orgOf(req), body.rate_limits);
    res.json({ rate_limits: policiesToJson(saved) });
  });

  router.get(`${BASE}/preview`, can('keys:read'), readShare(kt), async (req, res) => {
    const now = kt.clock.now();
    const { policy, plan, keys, spared } = await policies.preview(orgOf(req), now);
    const keyJson = (k: (typeof keys)[number]) => ({
      key_id: k.id,
      name: k.name,
      prefix: k.prefix,
      environment: k.environment,
      scopes: k.scopes,
      created_at: k.created_at.toISOString(),
      last_used_at: k.last_used_at?.toISOString() ?? null,
    });
    res.json({
      policy: publicPolicy(policy),
      next_run_at: policy.enabled ? nextMaintenanceRun(now).toISOString() : null,
      action: plan.action,
      downgraded: plan.downgraded,
      keys: keys.map(keyJson),
      spared: spared.map((k) => ({
        ...keyJson(k),
        reason: k.reason,
        detail: SPARE_REASONS[k.reason],
      })),
    });
  });
  return router;
}
