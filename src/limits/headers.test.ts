import fc from 'fast-check';
import { parseList, serializeList, type Item, type List } from 'structured-headers';
import { describe, expect, it } from 'vitest';
import { compileRateHeaders, policyHeader, rateLimitHeader } from './headers.ts';
import { MAX_RATE_POLICIES, POLICY_NAME_RE, type RatePolicy } from './limits.types.ts';

const BURST_DAILY: RatePolicy[] = [
  { name: 'burst', limit: 100, windowSeconds: 1 },
  { name: 'daily', limit: 100_000, windowSeconds: 86_400 },
];

const intArb = fc.integer({ min: 0, max: 10 ** 9 });
const policiesArb = fc.uniqueArray(
  fc.record({
    name: fc.stringMatching(POLICY_NAME_RE),
    limit: intArb,
    windowSeconds: intArb,
  }),
  { minLength: 1, maxLength: MAX_RATE_POLICIES, selector: (p) => p.name },
);
/** Policies with the numbers of one request: remaining and reset seconds for each. */
const requestArb = policiesArb.chain((policies) =>
  fc.record({
    policies: fc.constant(policies),
    r: fc.array(intArb, { minLength: policies.length, maxLength: policies.length }),
    t: fc.array(intArb, { minLength: policies.length, maxLength: policies.length }),
  }),
);

const items = (names: readonly string[], params: [string, readonly number[]][]): List =>
  names.map((name, i): Item => [name, new Map(params.map(([key, values]) => [key, values[i]!]))]);

/** Each member as [name, {param: value}], read back by an independent RFC 9651 parser. */
const read = (header: string) =>
  parseList(header).map(([name, params]) => [name, Object.fromEntries(params)]);

describe('policyHeader', () => {
  it('lists each policy with its quota and window', () => {
    expect(policyHeader(BURST_DAILY)).toBe('"burst";q=100;w=1, "daily";q=100000;w=86400');
  });

  it('serializes exactly as an RFC 9651 serializer does and parses back to the policies', () => {
    fc.assert(
      fc.property(policiesArb, (policies) => {
        const header = policyHeader(policies);
        const names = policies.map((p) => p.name);
        const params: [string, number[]][] = [
          ['q', policies.map((p) => p.limit)],
          ['w', policies.map((p) => p.windowSeconds)],
        ];
        expect(header).toBe(serializeList(items(names, params)));
        expect(read(header)).toEqual(
          policies.map((p) => [p.name, { q: p.limit, w: p.windowSeconds }]),
        );
      }),
    );
  });

  it('escapes quotes and backslashes and refuses what a String cannot hold', () => {
    const odd = [{ name: 'a"b\\c', limit: 1, windowSeconds: 1 }];
    expect(read(policyHeader(odd))).toEqual([['a"b\\c', { q: 1, w: 1 }]]);
    expect(() => policyHeader([{ name: 'é', limit: 1, windowSeconds: 1 }])).toThrow(RangeError);
  });
});

describe('rateLimitHeader', () => {
  it('gives remaining and seconds per policy, in policy order', () => {
    const compiled = compileRateHeaders(BURST_DAILY);
    expect(compiled.policy).toBe(policyHeader(BURST_DAILY));
    expect(rateLimitHeader(compiled, [42, 99_000], [1, 3600])).toBe(
      '"burst";r=42;t=1, "daily";r=99000;t=3600',
    );
  });

  it('serializes exactly as an RFC 9651 serializer does and parses back to the numbers', () => {
    fc.assert(
      fc.property(requestArb, ({ policies, r, t }) => {
        const header = rateLimitHeader(
          compileRateHeaders(policies),
          Float64Array.from(r),
          Float64Array.from(t),
        );
        const names = policies.map((p) => p.name);
        expect(header).toBe(
          serializeList(
            items(names, [
              ['r', r],
              ['t', t],
            ]),
          ),
        );
        expect(read(header)).toEqual(names.map((name, i) => [name, { r: r[i], t: t[i] }]));
      }),
    );
  });

  it('stays a well-formed field when handed negative, fractional or missing numbers', () => {
    const compiled = compileRateHeaders(BURST_DAILY);
    const header = rateLimitHeader(compiled, [-3, 2.7], [Number.NaN]);
    expect(header).toBe('"burst";r=0;t=0, "daily";r=2;t=0');
    expect(read(header)).toEqual([
      ['burst', { r: 0, t: 0 }],
      ['daily', { r: 2, t: 0 }],
    ]);
  });

  it('identifies nothing but the policy', () => {
    const header = rateLimitHeader(compileRateHeaders(BURST_DAILY), [1, 2], [3, 4]);
    for (const [, params] of parseList(header)) expect([...params.keys()]).toEqual(['r', 't']);
  });
});
