import type { Environment } from './key-format.ts';
import type { KeyLimits } from '../limits/key-limits.ts';
import type { QuotaConfig, RatePolicy } from '../limits/limits.types.ts';

export const SCOPE_RE = /^[a-z][a-z0-9_.:-]{0,63}$/;
export const MANAGEMENT_SCOPES = [
  'keys:read',
  'keys:write',
  'keys:verify',
  'usage:read',
  'events:read',
  'events:write',
  'audit:read',
] as const;
export const ADMIN_SCOPE = 'org:admin';

export const KEY_STATUSES = ['active', 'expired', 'revoked'] as const;
export type KeyStatus = (typeof KEY_STATUSES)[number];

/** The public view of a key. It has no field that could carry the hash or plaintext. */
export type ApiKey = {
  id: string;
  orgId: string;
  name: string;
  environment: Environment;
  prefix: string;
  scopes: string[];
  status: KeyStatus;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  revokedReason: string | null;
  rotatedFromId: string | null;
  lastUsedAt: Date | null;
  lastUsedIp: string | null;
  requestCount: number;
  /** Client addresses (canonical CIDRs) the key works from; [] = any (SPEC §11). */
  allowedIps: string[];
  /** What the key's limits count against (its own id unless it was rotated from a key). */
  limitsId: string;
  /** The key's own rate limits; [] = none of its own (the org default applies, if any). */
  rateLimits: RatePolicy[];
  /** Shared with the keys of its rotation; `remaining` never shows more than is left. */
  quota: (QuotaConfig & { remaining: number }) | null;
};

/** What authentication needs to decide, cached per instance. */
export type AuthRecord = {
  id: string;
  orgId: string;
  environment: Environment;
  prefix: string;
  scopes: string[];
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** Compiled at load; null when the key has no limit (nothing to check per request). */
  limits: KeyLimits | null;
};

/** The identity attached to a request once its key is verified. */
export type KeyIdentity = { id: string; orgId: string; environment: Environment; scopes: string[] };

export type Actor = { type: 'key'; key: KeyIdentity } | { type: 'operator' } | { type: 'system' };

export const VERIFY_CODES = [
  'VALID',
  'NOT_FOUND',
  'EXPIRED',
  'REVOKED',
  'INSUFFICIENT_SCOPE',
  'MALFORMED',
  'IP_NOT_ALLOWED',
  'RATE_LIMITED',
  'QUOTA_EXCEEDED',
] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

export type AuthOutcome =
  | { code: 'MALFORMED' | 'NOT_FOUND' }
  | { code: 'VALID' | 'EXPIRED' | 'REVOKED'; record: AuthRecord };

export function statusOf(
  key: { revokedAt: Date | null; expiresAt: Date | null },
  now: Date,
): KeyStatus {
  if (key.revokedAt !== null) return 'revoked';
  if (key.expiresAt !== null && key.expiresAt.getTime() <= now.getTime()) return 'expired';
  return 'active';
}

const MANAGEMENT: readonly string[] = MANAGEMENT_SCOPES;

/** Required scopes not held. On every request: no allocation when nothing is required. */
export function missingScopes(held: readonly string[], required: readonly string[]): string[] {
  if (required.length === 0) return [];
  const admin = held.includes(ADMIN_SCOPE);
  return required.filter((s) => !held.includes(s) && !(admin && MANAGEMENT.includes(s)));
}

/**
 * Scopes `caller` may not hand out. An `org:admin` key is the org's root and may grant any
 * scope (including custom application scopes); any other key only what it effectively holds.
 */
export function ungrantableScopes(
  caller: readonly string[],
  requested: readonly string[],
): string[] {
  if (caller.includes(ADMIN_SCOPE)) return [];
  return missingScopes(caller, requested);
}
