/**
 * What the dormant-key policy tests do to a tracking app (useTrackingApp, admin-app.ts): age keys,
 * record or backdate their uses, save and preview policies, act as the operator, read the keys'
 * states and the audit trail. Each helper reads `tracked.app` when called (it starts in beforeAll).
 */
import { sql } from 'kysely';
import { expect } from 'vitest';
import { operatorPlan } from '../src/policies/dormant.service.ts';
import type { TestOrg } from '../src/testing/factories.ts';
import { waitFor, type TestApp } from '../src/testing/harness.ts';

type Tracked = { app: TestApp };
type AuditRow = { target_id: string | null; actor_type: string; details: Record<string, unknown> };
/** The preview's body, as far as these tests read it. */
type Preview = {
  action: string;
  keys: { key_id: string }[];
  spared: { key_id: string; reason: string }[];
  downgraded: string | null;
};
type Rotated = { key: string; api_key: { id: string } };

export const REVOKE = { enabled: true, after_days: 7, action: 'revoke' };
export const policyPath = (org: TestOrg) => `/api/orgs/${org.orgId}/policies/dormant-keys`;

/** The keys' side: their age, their uses (real or backdated) and whether they are revoked. */
function keyFixtures(tracked: Tracked) {
  const db = () => tracked.app.kt.database.db;
  return {
    db,
    setCreated: async (keyIds: string[], days: number): Promise<void> => {
      await sql`update api_keys set created_at = now() - make_interval(days => ${days})
        where id = any(${keyIds}::uuid[])`.execute(db());
    },
    /** Every key of the org was created `days` ago (and never used since, unless used later). */
    ageOrg: async (org: TestOrg, days: number): Promise<void> => {
      await sql`update api_keys set created_at = now() - make_interval(days => ${days})
        where org_id = ${org.orgId}`.execute(db());
    },
    /** Waits until `requests` uses of the key are ingested, then moves its last use `days` back. */
    usedLongAgo: async (keyId: string, requests: number, days: number): Promise<void> => {
      await waitFor(async () => {
        const { rows } = await sql<{ n: string }>`select request_count as n
          from api_key_usage_totals where key_id = ${keyId}`.execute(db());
        return Number(rows[0]?.n ?? 0) >= requests;
      });
      await sql`update api_key_usage_totals set last_used_at = now() - make_interval(days => ${days})
        where key_id = ${keyId}`.execute(db());
    },
    /** A real tracked request with `key`, waited for until its use is in the totals. */
    use: async (key: string, keyId: string): Promise<void> => {
      const before = Date.now();
      expect((await tracked.app.client.get('/api/keys/self', { key })).status).toBe(200);
      await waitFor(async () => {
        const { rows } = await sql<{ at: Date | null }>`select last_used_at as at
          from api_key_usage_totals where key_id = ${keyId}`.execute(db());
        const at = rows[0]?.at;
        return at && at.getTime() >= before - 1000 ? at : undefined;
      });
    },
    statusOf: async (keyId: string): Promise<'active' | 'revoked'> => {
      const { rows } = await sql<{ revoked: boolean }>`select revoked_at is not null as revoked
        from api_keys where id = ${keyId}`.execute(db());
      return rows[0]?.revoked ? 'revoked' : 'active';
    },
  };
}

/** The policy's side: saving, previewing and acting on it, and what the audit trail recorded. */
function policyFixtures(tracked: Tracked) {
  return {
    /** The org's audit entries of `action`, oldest first. */
    audits: async (org: TestOrg, action: string) => {
      const { rows } = await sql<AuditRow>`
        select target_id, actor_type, details from audit_events
        where org_id = ${org.orgId} and action = ${action} order by occurred_at, target_id`.execute(
        tracked.app.kt.database.db,
      );
      return rows;
    },
    setPolicy: async (org: TestOrg, body: object, key = org.adminKey) => {
      const res = await tracked.app.client.put(policyPath(org), { key, body });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    },
    preview: async (org: TestOrg) => {
      const res = await tracked.app.client.get(`${policyPath(org)}/preview`, { key: org.adminKey });
      expect(res.status).toBe(200);
      return res.body as Preview;
    },
    /** `keys dormant --revoke --days 7` without the CLI (and without waiting for usage). */
    actAsOperator: async (org: TestOrg) => {
      const policies = tracked.app.kt.dormantPolicies;
      const plan = operatorPlan({ ...(await policies.get(org.orgId)), after_days: 7 });
      return policies.act(org.orgId, plan, { type: 'operator' }, { usageChecked: true });
    },
    /** Rotates `keyId` with the org's admin key; the response body (key and api_key). */
    rotate: async (org: TestOrg, keyId: string, overlapSeconds: number) => {
      const res = await tracked.app.client.post(`/api/orgs/${org.orgId}/api-keys/${keyId}/rotate`, {
        key: org.adminKey,
        body: { overlap_seconds: overlapSeconds },
      });
      expect(res.status).toBe(201);
      return res.body as Rotated;
    },
  };
}

export function dormantFixtures(tracked: Tracked) {
  return { ...keyFixtures(tracked), ...policyFixtures(tracked) };
}
