import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import { AppError } from '../platform/errors.ts';
import { newId } from '../platform/ids.ts';
import { recordAudit, type AuditActor } from '../audit/audit.service.ts';
import { generateKey, hashKey, type Environment } from './key-format.ts';
import * as q from './keys.queries.ts';
import type { KeyCache } from './key-cache.ts';
import type { QuotaConfig, RatePolicy } from '../limits/limits.types.ts';
import { saveQuota } from '../limits/quota.queries.ts';
import { applyLimits, assertNotOwnLimits, limitsChanges, type LimitsPatch } from './keys.limits.ts';
import { policiesToJson } from '../limits/key-limits.ts';
import {
  ADMIN_SCOPE,
  ungrantableScopes,
  type ApiKey,
  type KeyIdentity,
  type KeyStatus,
} from './keys.types.ts';

export type IssuedKey = { plaintext: string; apiKey: ApiKey };
export type KeysServiceDeps = {
  db: Database;
  clock: Clock;
  cache: KeyCache;
  pepper: string;
  maxKeysPerOrg: number;
};
export type NewKeyInput = {
  name: string;
  environment?: Environment | undefined;
  scopes?: string[] | undefined;
  expiresAt?: Date | null | undefined;
  allowedIps?: string[] | undefined;
  rateLimits?: RatePolicy[] | undefined;
  quota?: QuotaConfig | null | undefined;
};
export type KeyPatch = LimitsPatch & {
  name?: string;
  scopes?: string[];
  expiresAt?: Date | null;
};
export type Cursor = { createdAt: Date; id: string };

const MAX_OVERLAP_SECONDS = 30 * 24 * 3600;

const actorOf = (caller: KeyIdentity): AuditActor => ({ type: 'key', keyId: caller.id });

function assertFuture(expiresAt: Date | null | undefined, now: Date): void {
  if (expiresAt && expiresAt.getTime() <= now.getTime()) {
    throw new AppError('validation_failed', {
      detail: 'expires_at must be in the future',
      errors: [{ path: 'expires_at', message: 'must be in the future' }],
    });
  }
}

function assertGrantable(caller: KeyIdentity, scopes: readonly string[]): void {
  const denied = ungrantableScopes(caller.scopes, scopes);
  if (denied.length > 0) {
    throw new AppError('insufficient_scope', {
      detail: `cannot grant scopes the calling key does not hold: ${denied.join(', ')}`,
    });
  }
}

/** Managing a key (patch, rotate, revoke) requires holding every scope it has. */
function assertCovers(caller: KeyIdentity, target: ApiKey): void {
  if (ungrantableScopes(caller.scopes, target.scopes).length > 0) {
    throw new AppError('insufficient_scope', {
      detail: 'the calling key cannot manage a key with scopes it does not hold',
    });
  }
}

export function createKeysService(deps: KeysServiceDeps) {
  const { db, clock, cache } = deps;

  async function loadForUpdate(trx: Database, orgId: string, keyId: string, now: Date) {
    const key = await q.findKey(trx, orgId, keyId, now, { forUpdate: true });
    if (!key) throw new AppError('not_found', { detail: 'API key not found' });
    return key;
  }

  /**
   * Serialises key creation per org so two concurrent creates cannot both pass the limit.
   * `exempt`: the operator's org:admin key, the way back into an org (a locked-out org at its
   * limit must not need keys revoked, by an admin it no longer has, first).
   */
  async function assertBelowLimit(
    trx: Database,
    orgId: string,
    now: Date,
    exempt = false,
  ): Promise<void> {
    if (!(await q.lockOrg(trx, orgId)))
      throw new AppError('not_found', { detail: 'org not found' });
    if (exempt) return;
    const active = await q.countActiveKeys(trx, orgId, now);
    if (active >= deps.maxKeysPerOrg) {
      throw new AppError('key_limit_reached', {
        detail: `the org already has ${active} active keys (limit ${deps.maxKeysPerOrg}); revoke unused keys first`,
      });
    }
  }

  /** Inserts a new key inside `trx` and audits it. The plaintext exists only in the result. */
  async function issueKey(
    trx: Database,
    input: Required<NewKeyInput> & {
      orgId: string;
      rotatedFromId: string | null;
      limitsId: string | null;
    },
    actor: AuditActor,
    now: Date,
  ): Promise<IssuedKey> {
    const generated = generateKey(input.environment);
    const id = newId();
    await q.insertKey(trx, {
      id,
      orgId: input.orgId,
      name: input.name,
      environment: input.environment,
      prefix: generated.prefix,
      keyHash: hashKey(deps.pepper, generated.plaintext),
      scopes: input.scopes,
      expiresAt: input.expiresAt,
      rotatedFromId: input.rotatedFromId,
      createdByKeyId: actor.type === 'key' ? actor.keyId : null,
      createdAt: now,
      allowedIps: input.allowedIps,
      rateLimits: input.rateLimits,
      limitsId: input.limitsId,
    });
    // A rotated key shares its predecessor's quota row; a new key's quota is its own.
    if (input.quota && input.limitsId === null) {
      await saveQuota(trx, input.orgId, id, input.quota, undefined);
    }
    await recordAudit(trx, {
      orgId: input.orgId,
      at: now,
      actor,
      action: 'key.created',
      target: { type: 'api_key', id },
      details: {
        name: input.name,
        environment: input.environment,
        prefix: generated.prefix,
        scopes: input.scopes,
        expires_at: input.expiresAt,
        rotated_from_id: input.rotatedFromId,
        ...(input.allowedIps.length > 0 && { allowed_ips: input.allowedIps }),
        ...(input.rateLimits.length > 0 && { rate_limits: policiesToJson(input.rateLimits) }),
        ...(input.quota && { quota: input.quota }),
      },
    });
    const apiKey = await q.findKey(trx, input.orgId, id, now);
    if (!apiKey) throw new Error('inserted key not readable');
    return { plaintext: generated.plaintext, apiKey };
  }

  /**
   * Announces a change: NOTIFY reaches every instance when the transaction commits; `committed`
   * invalidates this instance's cache after commit, so a lookup racing the transaction cannot
   * leave the old state cached here.
   */
  async function announce(trx: Database, keyId: string): Promise<void> {
    await q.notifyKeyChanged(trx, keyId);
  }
  async function committed<T>(keyId: string, work: Promise<T>): Promise<T> {
    const result = await work;
    cache.invalidate(keyId);
    return result;
  }

  async function createAs(actor: AuditActor, orgId: string, input: NewKeyInput) {
    const now = clock.now();
    assertFuture(input.expiresAt, now);
    const exempt = actor.type === 'operator' && (input.scopes ?? []).includes(ADMIN_SCOPE);
    return db.transaction().execute(async (trx) => {
      await assertBelowLimit(trx, orgId, now, exempt);
      const full = {
        name: input.name,
        environment: input.environment ?? 'live',
        scopes: [...new Set(input.scopes ?? [])],
        expiresAt: input.expiresAt ?? null,
        allowedIps: input.allowedIps ?? [],
        rateLimits: input.rateLimits ?? [],
        quota: input.quota ?? null,
      };
      return issueKey(trx, { ...full, orgId, rotatedFromId: null, limitsId: null }, actor, now);
    });
  }

  return {
    issueKey,

    async create(caller: KeyIdentity, orgId: string, input: NewKeyInput): Promise<IssuedKey> {
      assertGrantable(caller, [...new Set(input.scopes ?? [])]);
      return createAs(actorOf(caller), orgId, input);
    },

    /**
     * `keytrail keys create`: the operator, who may grant any scope, e.g. a new org:admin key
     * for an org that lost its own (SPEC §9), even at the org's active-key limit (an org:admin
     * key only). Audited with actor `operator`.
     */
    async createByOperator(orgId: string, input: NewKeyInput): Promise<IssuedKey> {
      return createAs({ type: 'operator' }, orgId, input);
    },

    async get(orgId: string, keyId: string): Promise<ApiKey> {
      const key = await q.findKey(db, orgId, keyId, clock.now());
      if (!key) throw new AppError('not_found', { detail: 'API key not found' });
      return key;
    },

    /** The key this one replaced by rotation, and the key that replaced it (either may be null). */
    async rotationOf(
      orgId: string,
      key: ApiKey,
    ): Promise<{ previous: ApiKey | null; next: ApiKey | null }> {
      const now = clock.now();
      const [previous, next] = await Promise.all([
        key.rotatedFromId ? q.findKey(db, orgId, key.rotatedFromId, now) : null,
        q.findSuccessor(db, orgId, key.id, now),
      ]);
      return { previous, next };
    },

    list(
      orgId: string,
      params: { status: KeyStatus | undefined; limit: number; after: Cursor | undefined },
    ): Promise<q.KeyPage> {
      return q.listKeys(db, { orgId, ...params, now: clock.now() });
    },

    async update(caller: KeyIdentity, orgId: string, keyId: string, patch: KeyPatch) {
      const now = clock.now();
      if (patch.scopes) patch = { ...patch, scopes: [...new Set(patch.scopes)] };
      assertFuture(patch.expiresAt, now);
      const work = db.transaction().execute(async (trx) => {
        const before = await loadForUpdate(trx, orgId, keyId, now);
        assertCovers(caller, before);
        if (patch.scopes) assertGrantable(caller, patch.scopes);
        // Extending an expired key makes it active again: it must fit under the limit.
        const reactivates =
          before.status === 'expired' && patch.expiresAt !== undefined && before.revokedAt === null;
        if (reactivates) await assertBelowLimit(trx, orgId, now);
        await assertNotOwnLimits(trx, caller, before, patch);
        const { rateLimits: _r, quota: _q, ...rest } = patch;
        if (Object.keys(rest).length > 0) await q.updateKey(trx, orgId, keyId, rest);
        await announce(trx, keyId);
        for (const id of await applyLimits(trx, orgId, before, patch)) await announce(trx, id);
        await recordAudit(trx, {
          orgId,
          at: now,
          actor: actorOf(caller),
          action: 'key.updated',
          target: { type: 'api_key', id: keyId },
          details: changes(before, patch),
        });
        return loadForUpdate(trx, orgId, keyId, now);
      });
      return committed(keyId, work);
    },

    async rotate(caller: KeyIdentity, orgId: string, keyId: string, overlapSeconds: number) {
      if (overlapSeconds < 0 || overlapSeconds > MAX_OVERLAP_SECONDS) {
        throw new AppError('validation_failed', { detail: 'overlap_seconds out of range' });
      }
      const now = clock.now();
      const work = db.transaction().execute(async (trx) => {
        const old = await loadForUpdate(trx, orgId, keyId, now);
        assertCovers(caller, old);
        if (old.status !== 'active') {
          throw new AppError('unprocessable', { detail: `cannot rotate a ${old.status} key` });
        }
        const next = await issueKey(
          trx,
          { ...old, orgId, rotatedFromId: old.id, limitsId: old.limitsId },
          actorOf(caller),
          now,
        );
        if (overlapSeconds === 0) {
          await q.markRevoked(trx, orgId, old.id, now, 'rotated');
        } else {
          const overlapEnd = new Date(now.getTime() + overlapSeconds * 1000);
          const keepsSooner = old.expiresAt !== null && old.expiresAt < overlapEnd;
          if (!keepsSooner) await q.updateKey(trx, orgId, old.id, { expiresAt: overlapEnd });
        }
        await announce(trx, old.id);
        await recordAudit(trx, {
          orgId,
          at: now,
          actor: actorOf(caller),
          action: 'key.rotated',
          target: { type: 'api_key', id: old.id },
          details: { new_key_id: next.apiKey.id, overlap_seconds: overlapSeconds },
        });
        return { ...next, previous: await loadForUpdate(trx, orgId, old.id, now) };
      });
      return committed(keyId, work);
    },

    /** Idempotent: revoking a revoked key returns it unchanged and audits nothing. */
    async revoke(caller: KeyIdentity, orgId: string, keyId: string, reason: string | null) {
      const now = clock.now();
      const work = db.transaction().execute(async (trx) => {
        const key = await loadForUpdate(trx, orgId, keyId, now);
        assertCovers(caller, key);
        if (key.revokedAt !== null) return key;
        await q.markRevoked(trx, orgId, keyId, now, reason);
        await announce(trx, keyId);
        await recordAudit(trx, {
          orgId,
          at: now,
          actor: actorOf(caller),
          action: 'key.revoked',
          target: { type: 'api_key', id: keyId },
          details: { reason, prefix: key.prefix },
        });
        return loadForUpdate(trx, orgId, keyId, now);
      });
      return committed(keyId, work);
    },
  };
}

function changes(before: ApiKey, patch: KeyPatch): Record<string, unknown> {
  const out: Record<string, { from: unknown; to: unknown }> = {};
  if (patch.name !== undefined) out.name = { from: before.name, to: patch.name };
  if (patch.scopes !== undefined) out.scopes = { from: before.scopes, to: patch.scopes };
  if (patch.expiresAt !== undefined) {
    out.expires_at = { from: before.expiresAt, to: patch.expiresAt };
  }
  return { changes: { ...out, ...limitsChanges(before, patch) } };
}

export type KeysService = ReturnType<typeof createKeysService>;
