/**
 * Rate limits as the admin page edits them (SPEC §11): rows of text fields, a window as a number
 * and a unit, parsed to the API's `rate_limits` before anything is sent (the API checks too).
 */
import {
  MAX_RATE_POLICIES,
  POLICY_NAME_RE,
  RATE_LIMIT_MAX,
  WINDOW_SECONDS_MAX,
} from '../../limits/limits.types.ts';
import type { Parsed } from '../keys/key-form.ts';

export { MAX_RATE_POLICIES };

export const WINDOW_UNITS = [
  { id: 'second', label: 'seconds', seconds: 1 },
  { id: 'minute', label: 'minutes', seconds: 60 },
  { id: 'hour', label: 'hours', seconds: 3_600 },
  { id: 'day', label: 'days', seconds: 86_400 },
] as const;

export type WindowUnit = (typeof WINDOW_UNITS)[number]['id'];
export type RateRow = { name: string; limit: string; window: string; unit: WindowUnit };
export type RatePolicyJson = { name: string; limit: number; window_seconds: number };

export const emptyRow = (index: number): RateRow => ({
  name: index === 0 ? 'burst' : `limit-${index + 1}`,
  limit: '',
  window: '1',
  unit: index === 0 ? 'second' : 'minute',
});

/** The rows of saved policies, each window in the largest unit that divides it. */
export function rowsOf(policies: readonly RatePolicyJson[]): RateRow[] {
  return policies.map((p) => {
    const unit = [...WINDOW_UNITS].reverse().find((u) => p.window_seconds % u.seconds === 0);
    const { id, seconds } = unit ?? WINDOW_UNITS[0];
    return {
      name: p.name,
      limit: String(p.limit),
      window: String(p.window_seconds / seconds),
      unit: id,
    };
  });
}

const wholeNumber = (text: string): number =>
  /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;

/** The API's `rate_limits`, or the first row's problem ("Limit 2: …"). */
export function parseRows(rows: readonly RateRow[]): Parsed<RatePolicyJson[]> {
  if (rows.length > MAX_RATE_POLICIES) {
    return { ok: false, message: `At most ${MAX_RATE_POLICIES} rate limits.` };
  }
  const policies: RatePolicyJson[] = [];
  for (const [i, row] of rows.entries()) {
    const at = `Limit ${i + 1}`;
    const name = row.name.trim();
    if (!POLICY_NAME_RE.test(name)) {
      return {
        ok: false,
        message: `${at}: the name starts with a lowercase letter, then up to 31 of a–z, 0–9, _ and -.`,
      };
    }
    if (policies.some((p) => p.name === name)) {
      return { ok: false, message: `${at}: another limit is named ${name}.` };
    }
    const limit = wholeNumber(row.limit);
    if (!(limit >= 1 && limit <= RATE_LIMIT_MAX)) {
      return {
        ok: false,
        message: `${at}: requests must be a whole number from 1 to 1,000,000,000.`,
      };
    }
    const unit = WINDOW_UNITS.find((u) => u.id === row.unit) ?? WINDOW_UNITS[0];
    const seconds = wholeNumber(row.window) * unit.seconds;
    if (!(seconds >= 1 && seconds <= WINDOW_SECONDS_MAX)) {
      return { ok: false, message: `${at}: the window must be a whole number, up to 31 days.` };
    }
    policies.push({ name, limit, window_seconds: seconds });
  }
  return { ok: true, value: policies };
}

/** "100 per second", "5,000 per 15 minutes": a policy as a table cell says it. */
export function describePolicy(p: RatePolicyJson, format: (n: number) => string): string {
  const [row] = rowsOf([p]);
  const unit = WINDOW_UNITS.find((u) => u.id === row?.unit) ?? WINDOW_UNITS[0];
  const count = Number(row?.window ?? p.window_seconds);
  const per = count === 1 ? unit.id : `${format(count)} ${unit.label}`;
  return `${format(p.limit)} per ${per}`;
}
