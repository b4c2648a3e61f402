/**
 * A key's limits as its dialogs edit them (SPEC §11): rate limit rows, a quota, allowed IPs.
 * Parsed before anything is sent; the API checks again and words what is wrong with an address.
 */
import { QUOTA_MAX } from '../../limits/limits.types.ts';
import type { Parsed } from '../keys/key-form.ts';
import { parseRows, rowsOf, type RatePolicyJson, type RateRow } from './rate-rows.ts';

export type Refill = 'none' | 'day' | 'month';

export type LimitsForm = {
  rows: RateRow[];
  quotaOn: boolean;
  quotaLimit: string;
  refill: Refill;
  refillAmount: string;
  /** Editing only: a new value for what remains (empty: unchanged). */
  remaining: string;
  allowedIps: string;
};

export type KeyLimitsJson = {
  rate_limits: RatePolicyJson[];
  quota: {
    limit: number;
    remaining: number;
    refill: { interval: 'day' | 'month'; amount: number } | null;
  } | null;
  allowed_ips: string[];
};

export const EMPTY_LIMITS: LimitsForm = {
  rows: [],
  quotaOn: false,
  quotaLimit: '',
  refill: 'none',
  refillAmount: '',
  remaining: '',
  allowedIps: '',
};

/** The form of a key's current limits. */
export function limitsFormOf(key: KeyLimitsJson): LimitsForm {
  const q = key.quota;
  return {
    rows: rowsOf(key.rate_limits),
    quotaOn: q !== null,
    quotaLimit: q ? String(q.limit) : '',
    refill: q?.refill?.interval ?? 'none',
    refillAmount: q?.refill ? String(q.refill.amount) : '',
    remaining: '',
    allowedIps: key.allowed_ips.join('\n'),
  };
}

function count(text: string, what: string, min: number): Parsed<number> {
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (n >= min && n <= QUOTA_MAX) return { ok: true, value: n };
  return { ok: false, message: `${what} must be a whole number from ${min} to 10¹².` };
}

type QuotaBody = { limit: number; refill: { interval: 'day' | 'month'; amount: number } | null };

function parseQuota(f: LimitsForm): Parsed<QuotaBody | null> {
  if (!f.quotaOn) return { ok: true, value: null };
  const limit = count(f.quotaLimit, 'The quota', 1);
  if (!limit.ok) return limit;
  if (f.refill === 'none') return { ok: true, value: { limit: limit.value, refill: null } };
  const amount = f.refillAmount.trim() === '' ? limit : count(f.refillAmount, 'The refill', 1);
  if (!amount.ok) return amount;
  if (amount.value > limit.value) {
    return { ok: false, message: 'The refill must not exceed the quota.' };
  }
  return {
    ok: true,
    value: { limit: limit.value, refill: { interval: f.refill, amount: amount.value } },
  };
}

/** One address or network per line (commas and spaces separate too). */
export const ipsOf = (text: string): string[] => text.split(/[\s,]+/).filter((s) => s !== '');

export type LimitsBody = {
  rate_limits: RatePolicyJson[];
  quota: (QuotaBody & { remaining?: number }) | null;
  allowed_ips: string[];
};

/** The body's limits fields; `editing` takes `remaining` too. */
export function parseLimits(f: LimitsForm, editing: boolean): Parsed<LimitsBody> {
  const rates = parseRows(f.rows);
  if (!rates.ok) return rates;
  const quota = parseQuota(f);
  if (!quota.ok) return quota;
  let remaining: number | undefined;
  if (editing && quota.value && f.remaining.trim() !== '') {
    const r = count(f.remaining, 'Remaining', 0);
    if (!r.ok) return r;
    remaining = r.value;
  }
  const q = quota.value && (remaining === undefined ? quota.value : { ...quota.value, remaining });
  return {
    ok: true,
    value: { rate_limits: rates.value, quota: q, allowed_ips: ipsOf(f.allowedIps) },
  };
}
