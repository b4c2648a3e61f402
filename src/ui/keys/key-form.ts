/** Pure parsing of the key dialogs' fields, checked before anything is sent (the API checks too). */

export const SCOPE_PATTERN = /^[a-z][a-z0-9_.:-]{0,63}$/;
export const MAX_OVERLAP_SECONDS = 30 * 86_400;
export const MAX_REASON = 500;

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** "a:read, b:write c" → ["a:read", "b:write", "c"], duplicates dropped; each must match §4. */
export function parseScopes(text: string): Parsed<string[]> {
  const scopes = [...new Set(text.split(/[\s,]+/).filter((s) => s !== ''))];
  const bad = scopes.filter((s) => !SCOPE_PATTERN.test(s));
  if (bad.length > 0)
    return {
      ok: false,
      message: `Not a valid scope: ${bad.join(', ')}. A scope starts with a lowercase letter, then up to 63 of a–z, 0–9, _ . : -`,
    };
  return { ok: true, value: scopes };
}

/** A datetime-local value ("2026-12-01T10:30", local time) → ISO UTC; empty → null (no expiry). */
export function parseExpiry(value: string, now: number): Parsed<string | null> {
  if (value === '') return { ok: true, value: null };
  const at = new Date(value).getTime();
  if (Number.isNaN(at)) return { ok: false, message: 'Not a valid date and time.' };
  if (at <= now) return { ok: false, message: 'The expiry must be in the future.' };
  return { ok: true, value: new Date(at).toISOString() };
}

export const OVERLAPS = [
  { id: 'none', label: 'None (revoke now)', seconds: 0 },
  { id: '1h', label: '1 hour', seconds: 3600 },
  { id: '24h', label: '24 hours', seconds: 86_400 },
  { id: '7d', label: '7 days', seconds: 7 * 86_400 },
  { id: 'custom', label: 'Custom', seconds: null },
] as const;

export type OverlapId = (typeof OVERLAPS)[number]['id'];

/** The overlap in seconds: a preset, or custom hours (decimals allowed) from 0 to 30 days. */
export function overlapSeconds(id: OverlapId, customHours: string): Parsed<number> {
  const preset = OVERLAPS.find((o) => o.id === id)?.seconds;
  if (preset !== null && preset !== undefined) return { ok: true, value: preset };
  const hours = customHours.trim() === '' ? NaN : Number(customHours);
  const seconds = Math.round(hours * 3600);
  if (!Number.isFinite(hours) || seconds < 0 || seconds > MAX_OVERLAP_SECONDS)
    return { ok: false, message: 'Custom overlap: a number of hours from 0 to 720 (30 days).' };
  return { ok: true, value: seconds };
}
