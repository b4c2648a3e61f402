import { describe, expect, it } from 'vitest';
import { overlapSeconds, parseExpiry, parseScopes } from './key-form.ts';

describe('key dialog fields', () => {
  it('splits scopes on spaces and commas, drops duplicates and rejects bad ones by name', () => {
    expect(parseScopes(' orders:read,orders:write  orders:read ')).toEqual({
      ok: true,
      value: ['orders:read', 'orders:write'],
    });
    expect(parseScopes('')).toEqual({ ok: true, value: [] });
    const bad = parseScopes('ok Bad:Scope 9x');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.message).toContain('Bad:Scope, 9x');
    expect(parseScopes(`a${'b'.repeat(63)}`).ok).toBe(true);
    expect(parseScopes(`a${'b'.repeat(64)}`).ok).toBe(false);
  });

  it('reads the expiry as local time, none when empty, and refuses the past', () => {
    const now = Date.parse('2026-12-01T10:00:00Z');
    expect(parseExpiry('', now)).toEqual({ ok: true, value: null });
    expect(parseExpiry('2020-01-01T00:00', now).ok).toBe(false);
    expect(parseExpiry('nonsense', now).ok).toBe(false);
    const later = parseExpiry('2030-01-01T00:00', now);
    expect(later.ok && later.value).toBe(new Date('2030-01-01T00:00').toISOString());
  });

  it('turns the overlap choice into seconds, custom hours within 0–30 days', () => {
    expect(overlapSeconds('none', '')).toEqual({ ok: true, value: 0 });
    expect(overlapSeconds('1h', 'x')).toEqual({ ok: true, value: 3600 });
    expect(overlapSeconds('7d', '')).toEqual({ ok: true, value: 604_800 });
    expect(overlapSeconds('custom', '1.5')).toEqual({ ok: true, value: 5400 });
    expect(overlapSeconds('custom', '720')).toEqual({ ok: true, value: 2_592_000 });
    expect(overlapSeconds('custom', '721').ok).toBe(false);
    expect(overlapSeconds('custom', '-1').ok).toBe(false);
    expect(overlapSeconds('custom', '').ok).toBe(false);
  });
});
