import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isUuid } from '../platform/ids.ts';
import { aggregate } from './usage.aggregate.ts';
import { mergePayloads, selectRows } from './usage.batch.ts';
import { decodePayload, encodePayload, usagePayloadSchema } from './usage.jobs.ts';
import { encodeEventsCopy, isoTimes } from './usage.queries.ts';
import { LIMITED_OUTCOMES, OUTCOMES, type UsageEvent } from './usage.types.ts';

const KEYS = [
  ['018f0000-0000-7000-8000-00000000000a', '018f0000-0000-7000-8000-0000000000f0'],
  ['018f0000-0000-7000-8000-00000000000b', '018f0000-0000-7000-8000-0000000000f0'],
  ['018f0000-0000-7000-8000-00000000000c', '018f0000-0000-7000-8000-0000000000f1'],
] as const;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 30, 22);

const eventArb: fc.Arbitrary<UsageEvent> = fc
  .record({
    eventId: fc.uuid(),
    key: fc.constantFrom(...KEYS),
    occurredAt: fc.integer({ min: T0 - DAY, max: T0 + 2 * DAY }),
    method: fc.constantFrom('GET', 'POST', 'get', 'M\tX', 'GÉT'),
    route: fc.constantFrom('/a', '/b/:id', 'tab\there', 'back\\slash', 'line\nbreak', '/ünï/✓'),
    status: fc.integer({ min: 100, max: 599 }),
    latencyMs: fc.constantFrom(0, 0.5, 3.25, 120, 40_000),
    ip: fc.constantFrom(null, '10.0.0.1', '::1'),
    userAgent: fc.constantFrom(null, 'curl/8', 'a\tb\\c\r\n', '\\N'),
    outcome: fc.constantFrom(...OUTCOMES),
  })
  .map(({ key, ...e }) => ({ ...e, keyId: key[0], orgId: key[1] }));

/** The COPY text of one event as the ingester wrote it before it read columns. */
const escape = (v: string | null): string =>
  v === null
    ? '\\N'
    : v.replace(
        /[\\\t\n\r]/g,
        (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c] ?? c,
      );
const referenceLine = (e: UsageEvent): string =>
  [
    e.eventId,
    e.orgId,
    e.keyId,
    new Date(e.occurredAt).toISOString(),
    escape(e.method),
    escape(e.route),
    e.status,
    e.latencyMs,
    escape(e.ip),
    escape(e.userAgent),
    e.outcome,
  ].join('\t') + '\n';

describe('batches in columns', () => {
  it('writes the COPY text of each event as the per-event encoder did, escapes included', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 600 }), (events) => {
        expect(Buffer.concat(encodeEventsCopy(encodePayload(events))).toString()).toBe(
          events.map(referenceLine).join(''),
        );
      }),
    );
  });

  it('formats times as toISOString does, across seconds, days and extended years', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 8.64e15 }), { maxLength: 50 }), (times) => {
        const iso = isoTimes();
        for (const ms of [
          ...times,
          ...times.map((t) => Math.max(0, t - 1)),
          // Fractions of a millisecond (exact below 2^52).
          ...times.filter((t) => t < 2 ** 52).map((t) => t + 0.7),
        ])
          expect(iso(ms)).toBe(new Date(ms).toISOString());
      }),
    );
  });

  it('merges payloads into one batch holding every event of each, in order', () => {
    fc.assert(
      fc.property(fc.array(fc.array(eventArb, { maxLength: 20 }), { maxLength: 5 }), (groups) => {
        const merged = mergePayloads(groups.map(encodePayload));
        expect(decodePayload(merged)).toEqual(decodePayload(encodePayload(groups.flat())));
        expect(aggregate(merged)).toEqual(aggregate(encodePayload(groups.flat())));
      }),
    );
  });

  it('sums every event into totals, hours, days and routes alike', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 60 }), (events) => {
        const r = aggregate(encodePayload(events));
        const ok = events.filter((e) => e.outcome === 'success');
        const sum = (rows: { requests: number }[]) => rows.reduce((n, x) => n + x.requests, 0);
        const denied = (rows: { denied: number }[]) => rows.reduce((n, x) => n + x.denied, 0);
        const limited = (rows: { limited: number }[]) => rows.reduce((n, x) => n + x.limited, 0);
        const isLimited = (e: UsageEvent) =>
          (LIMITED_OUTCOMES as readonly string[]).includes(e.outcome);
        const refusedByLimit = events.filter(isLimited).length;
        for (const rows of [r.totals, r.hourly, r.daily, r.routes])
          expect(sum(rows)).toBe(ok.length);
        for (const rows of [r.totals, r.hourly, r.daily]) {
          expect(denied(rows)).toBe(events.length - ok.length - refusedByLimit);
          expect(limited(rows)).toBe(refusedByLimit);
        }
        // A refusal by a limit is neither use nor a denied attempt: it moves only its own mark.
        for (const t of r.totals) {
          const mine = events.filter((e) => e.keyId === t.keyId);
          const lastOf = (list: UsageEvent[]) =>
            list.length ? new Date(Math.max(...list.map((e) => e.occurredAt))) : null;
          expect(t.lastLimitedAt).toEqual(lastOf(mine.filter(isLimited)));
          expect(t.lastUsedAt).toEqual(lastOf(mine.filter((e) => e.outcome === 'success')));
        }
        const five = ok.filter((e) => e.status >= 500).length;
        expect(r.daily.reduce((n, x) => n + x.errors5xx, 0)).toBe(five);
        expect(r.routes.reduce((n, x) => n + x.errors, 0)).toBe(
          ok.filter((e) => e.status >= 400).length,
        );
        // One row per key and hour, per key and day, per key, day, method and route.
        const hours = new Set(
          events.map((e) => `${e.keyId}|${Math.floor(e.occurredAt / 3_600_000)}`),
        );
        expect(r.hourly).toHaveLength(hours.size);
        const routes = new Set(
          ok.map(
            (e) =>
              `${e.keyId}|${new Date(e.occurredAt).toISOString().slice(0, 10)}|${e.method}|${e.route}`,
          ),
        );
        expect(r.routes).toHaveLength(routes.size);
      }),
    );
  });

  it('refuses to merge one key under two orgs, and merges payloads of any size', () => {
    const [key, org] = KEYS[0];
    const one = encodePayload(
      fc.sample(eventArb, 3).map((e) => ({ ...e, keyId: key, orgId: org })),
    );
    const other = { ...one, keys: [[key, KEYS[2][1]]] as [string, string][] };
    expect(() => mergePayloads([one, other])).toThrow(/two orgs/);
    // Spreading a column into push() overflowed the stack past ~120,000 rows.
    const big = encodePayload(
      Array.from({ length: 150_000 }, (_, i) => ({
        ...fc.sample(eventArb, 1)[0]!,
        occurredAt: T0 + i,
      })),
    );
    expect(mergePayloads([big, one]).id).toHaveLength(150_003);
  });

  it('refuses a payload listing one key twice (two rollup rows for one key)', () => {
    const payload = encodePayload(fc.sample(eventArb, 2));
    const twice = {
      ...payload,
      keys: [...payload.keys, ...payload.keys.map(([k, o]) => [k.toUpperCase(), o])],
    };
    expect(usagePayloadSchema.safeParse(payload).success).toBe(true);
    expect(usagePayloadSchema.safeParse(twice).success).toBe(false);
  });

  it('selects rows by index and returns the batch itself when it keeps them all', () => {
    const batch = encodePayload(fc.sample(eventArb, 10));
    expect(selectRows(batch, () => true)).toBe(batch);
    expect(decodePayload(selectRows(batch, (i) => i % 3 === 0))).toEqual(
      decodePayload(batch).filter((_, i) => i % 3 === 0),
    );
  });

  it('checks uuids as the canonical 8-4-4-4-12 regex does', () => {
    const re = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
    const near = fc
      .tuple(fc.uuid(), fc.nat(35), fc.constantFrom('g', 'G', '-', 'é', '0', 'F', ''))
      .map(([u, i, c]) => u.slice(0, i) + c + u.slice(i + 1));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uuid(),
          fc.uuid().map((u) => u.toUpperCase()),
          near,
          fc.string(),
        ),
        (s) => {
          expect(isUuid(s)).toBe(re.test(s));
        },
      ),
    );
  });
});
