import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import { recordAudit } from '../audit/audit.service.ts';
import { policiesFromJson, policiesToJson } from '../limits/key-limits.ts';
import type { RatePolicy } from '../limits/limits.types.ts';
import { lockOrg, notifyKeyChanged } from './keys.queries.ts';
import { followsOrgDefault } from './keys.limits.queries.ts';
import { findOrgRateLimits, saveOrgRateLimits } from './rate-defaults.queries.ts';
import type { KeyCache } from './key-cache.ts';
import { ADMIN_SCOPE, type KeyIdentity } from './keys.types.ts';
import { AppError } from '../platform/errors.ts';

/** The payload of a key-change notice that concerns every key of an org. */
export const orgNotice = (orgId: string): string => `org:${orgId}`;

/**
 * The org's default rate limits (SPEC §11): they apply to every key without rate limits of its
 * own. A change reaches every instance like a key change: a notice in the transaction, on which
 * each instance drops the org's cached keys, so the next request reloads them (within 1 s).
 */
export function createRateDefaults(deps: { db: Database; clock: Clock; cache: KeyCache }) {
  const { db, clock, cache } = deps;

  async function get(orgId: string): Promise<RatePolicy[]> {
    return policiesFromJson(await findOrgRateLimits(db, orgId));
  }

  async function put(caller: KeyIdentity, orgId: string, policies: RatePolicy[]) {
    const now = clock.now();
    await db.transaction().execute(async (trx) => {
      if (!(await lockOrg(trx, orgId)))
        throw new AppError('not_found', { detail: 'org not found' });
      // A key held to the default may not change it (it could lift its own cap); the org's
      // admin keys may.
      if (
        !caller.scopes.includes(ADMIN_SCOPE) &&
        (await followsOrgDefault(trx, orgId, caller.id))
      ) {
        throw new AppError('insufficient_scope', {
          detail:
            'a key held to the org default rate limits cannot change them; use an org:admin key',
        });
      }
      const before = policiesFromJson(await findOrgRateLimits(trx, orgId));
      await saveOrgRateLimits(trx, orgId, policiesToJson(policies), { at: now, keyId: caller.id });
      await notifyKeyChanged(trx, orgNotice(orgId));
      await recordAudit(trx, {
        orgId,
        at: now,
        actor: { type: 'key', keyId: caller.id },
        action: 'policy.updated',
        target: { type: 'policy', id: null },
        details: {
          policy: 'rate-limits',
          from: policiesToJson(before),
          to: policiesToJson(policies),
        },
      });
    });
    cache.invalidateOrg(orgId);
    return policies;
  }

  return { get, put };
}

export type RateDefaults = ReturnType<typeof createRateDefaults>;
