import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import { cacheKeyOf, hashesEqual, hashKey, KEY_LENGTH, parseKey } from './key-format.ts';
import { findAuthRecordByHash } from './keys.queries.ts';
import type { KeyCache } from './key-cache.ts';
import {
  missingScopes,
  statusOf,
  type AuthOutcome,
  type AuthRecord,
  type KeyIdentity,
  type VerifyCode,
} from './keys.types.ts';

export type VerifyResult = {
  valid: boolean;
  code: VerifyCode;
  key?: AuthRecord;
};

export type VerifyRequest = { scopes: readonly string[]; ip: string | undefined };

/**
 * The verify endpoint's decision on an authentication outcome, in SPEC §11's order: key, allowed
 * IP, scope. Another org's key is indistinguishable from no key. `ip`: the original caller's
 * address (a key with allowed IPs verified without one is refused: fail closed). Synchronous:
 * a cached key is verified without a promise.
 */
export function verifyOutcome(
  caller: KeyIdentity,
  outcome: AuthOutcome,
  request: VerifyRequest,
): VerifyResult {
  if (!('record' in outcome)) return { valid: false, code: outcome.code };
  const { code, record } = outcome;
  if (record.orgId !== caller.orgId) return { valid: false, code: 'NOT_FOUND' };
  if (code !== 'VALID') return { valid: false, code, key: record };
  const allowsIp = record.limits?.allowsIp;
  if (allowsIp && !allowsIp(request.ip)) {
    return { valid: false, code: 'IP_NOT_ALLOWED', key: record };
  }
  if (missingScopes(record.scopes, request.scopes).length > 0) {
    return { valid: false, code: 'INSUFFICIENT_SCOPE', key: record };
  }
  return { valid: true, code: 'VALID', key: record };
}

/**
 * Authentication: checksum → cache → Postgres. A malformed key never reaches the cache or the
 * database; the cache is keyed by the HMAC, so plaintext keys are never retained.
 */
export function createKeyAuthenticator(deps: {
  db: Database;
  clock: Clock;
  cache: KeyCache;
  pepper: string;
}) {
  const { db, clock, cache, pepper } = deps;

  async function load(hash: Buffer): Promise<AuthRecord | null> {
    const row = await findAuthRecordByHash(db, hash);
    if (!row || !hashesEqual(row.keyHash, hash)) return null;
    const { keyHash: _omitted, ...record } = row;
    return record;
  }

  function decide(record: AuthRecord | null): AuthOutcome {
    if (!record) return { code: 'NOT_FOUND' };
    const status = statusOf(record, clock.now());
    if (status === 'revoked') return { code: 'REVOKED', record };
    if (status === 'expired') return { code: 'EXPIRED', record };
    return { code: 'VALID', record };
  }

  /**
   * The answer when the checksum or the cache can give it, without a promise: the hot path of
   * every request. Undefined when Postgres must be asked (`authenticate`).
   */
  function authenticateCached(candidate: string): AuthOutcome | undefined {
    // Only a well-formed key is ever cached (a lookup follows a parse), so a cached entry
    // answers without parsing; the length check keeps a long header from being hashed.
    if (candidate.length !== KEY_LENGTH) return { code: 'MALFORMED' };
    const hit = cache.lookup(cacheKeyOf(candidate));
    if (hit !== undefined) return decide(hit);
    return parseKey(candidate) ? undefined : { code: 'MALFORMED' };
  }

  async function authenticate(candidate: string): Promise<AuthOutcome> {
    const known = authenticateCached(candidate);
    if (known) return known;
    // Only a well-formed key reaches here. The peppered HMAC is only needed to ask Postgres.
    const plaintext = candidate;
    return decide(await cache.get(cacheKeyOf(plaintext), () => load(hashKey(pepper, plaintext))));
  }

  /**
   * The verify endpoint's decision, in SPEC §11's order: key, allowed IP, scope. Another org's
   * key is indistinguishable from no key. `ip`: the original caller's address (a key with
   * allowed IPs verified without one is refused: fail closed). `known`: what
   * `authenticateCached` already answered for this candidate, if it did.
   */
  return { authenticate, authenticateCached };
}

export type KeyAuthenticator = ReturnType<typeof createKeyAuthenticator>;
