/**
 * Verify's body, checked without zod when it is the common shape (issue 19: verify's CPU). Only
 * bodies the schema would accept unchanged pass here; anything else (an unknown field, an `ip`,
 * a wrong type, a bad scope) goes through `VerifyBody`, which also words the 400.
 */
import { SCOPE_RE } from '../keys/keys.types.ts';
import { COST_MAX } from '../limits/limits.types.ts';
import { VerifyBody } from './schemas.ts';
import { parseInput } from './validate.ts';

export type VerifyInput = { key: string; scopes?: string[]; cost?: number; ip?: string };

const MAX_KEY = 500;
const MAX_SCOPES = 100;

function plainScopes(value: unknown): value is string[] {
  if (!Array.isArray(value) || value.length > MAX_SCOPES) return false;
  for (const s of value) if (typeof s !== 'string' || !SCOPE_RE.test(s)) return false;
  return true;
}

/** `{key}`, `{key, scopes}`, `{key, cost}`, `{key, scopes, cost}`, checked by hand. */
function fastPath(body: Record<string, unknown>): VerifyInput | undefined {
  let fields = 0;
  for (const _ in body) fields += 1;
  const { key, scopes, cost } = body;
  if (typeof key !== 'string' || key.length > MAX_KEY) return undefined;
  let expected = 1;
  if (scopes !== undefined) {
    if (!plainScopes(scopes)) return undefined;
    expected += 1;
  }
  if (cost !== undefined) {
    if (typeof cost !== 'number' || !Number.isInteger(cost) || cost < 0 || cost > COST_MAX) {
      return undefined;
    }
    expected += 1;
  }
  if (fields !== expected) return undefined;
  return body as VerifyInput;
}

export function verifyInput(raw: unknown): VerifyInput {
  const body = raw ?? {};
  if (typeof body === 'object' && !Array.isArray(body)) {
    const fast = fastPath(body as Record<string, unknown>);
    if (fast) return fast;
  }
  return parseInput(VerifyBody, body, 'body');
}
