import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { usageEvent } from '../testing/factories.ts';
import { normalizePath, routeOf } from './routes-normalize.ts';
import { encodePayload, unpackJob } from './usage.jobs.ts';
import {
  cleanText,
  isStorableText,
  ROUTE_MAX,
  USER_AGENT_MAX,
  type UsageEvent,
} from './usage.types.ts';

const event = (over: Partial<UsageEvent>): UsageEvent => ({
  ...usageEvent(
    {
      orgId: '018f0000-0000-7000-8000-0000000000aa',
      keyId: '018f0000-0000-7000-8000-0000000000bb',
      occurredAt: Date.UTC(2026, 10, 24),
    },
    1,
  ),
  ...over,
});

const refusal = (over: Partial<UsageEvent>): string | undefined => {
  const unpacked = unpackJob(encodePayload([event(over)]));
  return 'error' in unpacked ? unpacked.error : undefined;
};

/** Any text, weighted toward what breaks pipelines: astral, NUL, unpaired surrogate halves. */
const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 600 }),
  fc.string({
    unit: fc.constantFrom('😀', '\u0000', '\uD800', '\uDC00', 'a', '/', '%', '\t'),
    maxLength: 600,
  }),
);

describe('stored text: one definition for the producers and the job schema', () => {
  it('measures characters in code points, as Postgres does', () => {
    expect(isStorableText('😀'.repeat(ROUTE_MAX), ROUTE_MAX)).toBe(true);
    expect(isStorableText('😀'.repeat(ROUTE_MAX + 1), ROUTE_MAX)).toBe(false);
    expect(isStorableText('a\u0000b', 10)).toBe(false);
    expect(isStorableText('a\uD800b', 10)).toBe(false);
    expect(isStorableText('\uDC00\uD800', 10)).toBe(false);
  });

  it('cleans any text into text the job schema accepts', () => {
    fc.assert(
      fc.property(anyText, fc.integer({ min: 1, max: 300 }), (text, max) => {
        const clean = cleanText(text, max);
        expect(isStorableText(clean, max)).toBe(true);
        expect(refusal({ route: cleanText(text, ROUTE_MAX) })).toBeUndefined();
        expect(refusal({ userAgent: cleanText(text, USER_AGENT_MAX) })).toBeUndefined();
        expect(refusal({ route: normalizePath(text) })).toBeUndefined();
        expect(refusal({ route: routeOf(text, '/') })).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a job whose text Postgres would refuse or not store as sent', () => {
    expect(refusal({ route: '/😀'.repeat(100) })).toBeUndefined();
    expect(refusal({ userAgent: '😀'.repeat(USER_AGENT_MAX) })).toBeUndefined();
    expect(refusal({ route: '/a\u0000b' })).toMatch(/invalid column routes/);
    expect(refusal({ route: '/a\uD800' })).toMatch(/invalid column routes/);
    expect(refusal({ route: `/${'😀'.repeat(ROUTE_MAX)}` })).toMatch(/invalid column routes/);
    expect(refusal({ userAgent: 'curl\u0000' })).toMatch(/invalid column agents/);
    expect(refusal({ userAgent: 'x\uDFFF' })).toMatch(/invalid column agents/);
    expect(refusal({ method: 'GE\u0000T' })).toMatch(/invalid column m/);
    expect(refusal({ method: '' })).toMatch(/invalid column m/);
    expect(refusal({ method: 'X'.repeat(17) })).toMatch(/invalid column m/);
  });
});
