import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import { AppError } from '../platform/errors.ts';
import { newId } from '../platform/ids.ts';
import type { IssuedKey, KeysService } from '../keys/keys.service.ts';
import { ADMIN_SCOPE } from '../keys/keys.types.ts';
import { findOrg, insertOrg } from './orgs.queries.ts';
import type { Org } from './orgs.types.ts';

export function createOrgsService(deps: { db: Database; clock: Clock; keys: KeysService }) {
  const { db, clock, keys } = deps;
  return {
    /** Creates an org and its first `org:admin` key in one transaction. */
    async create(name: string): Promise<{ org: Org; adminKey: IssuedKey }> {
      const now = clock.now();
      return db.transaction().execute(async (trx) => {
        const org: Org = { id: newId(), name, createdAt: now };
        await insertOrg(trx, org);
        const adminKey = await keys.issueKey(
          trx,
          {
            orgId: org.id,
            name: 'admin',
            environment: 'live',
            scopes: [ADMIN_SCOPE],
            expiresAt: null,
            rotatedFromId: null,
            allowedIps: [],
            rateLimits: [],
            quota: null,
            limitsId: null,
          },
          { type: 'operator' },
          now,
        );
        return { org, adminKey };
      });
    },

    async get(orgId: string): Promise<Org> {
      const org = await findOrg(db, orgId);
      if (!org) throw new AppError('not_found', { detail: 'org not found' });
      return org;
    },
  };
}

export type OrgsService = ReturnType<typeof createOrgsService>;
