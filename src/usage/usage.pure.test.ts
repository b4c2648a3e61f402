import { describe, expect, it } from 'vitest';
import { BUCKETS, LOWER_BOUNDS_MS, bucketOf, emptyHistogram, quantile } from './histogram.ts';
import { normalizePath, routeOf } from './routes-normalize.ts';
import {
  decodePayload,
  encodePayload,
  packEvents,
  unpackJob,
  usagePayloadSchema,
} from './usage.jobs.ts';
import { aggregate, capRoutes } from './usage.aggregate.ts';
import { usageEvent } from '../testing/factories.ts';
import type { UsageEvent } from './usage.types.ts';
import { partitionMonth, partitionName } from './usage.queries.ts';

const KEY_A = '018f0000-0000-7000-8000-00000000000a';
const KEY_B = '018f0000-0000-7000-8000-00000000000b';
const ORG = '018f0000-0000-7000-8000-0000000000f0';
let n = 0;
function event(over: Partial<UsageEvent> = {}): UsageEvent {
  n += 1;
  return {
    eventId: `018f0000-0000-7000-8000-${String(n).padStart(12, '0')}`,
    orgId: ORG,
    keyId: KEY_A,
    occurredAt: Date.UTC(2026, 10, 24, 10, 0, 0) + n,
    method: 'GET',
    route: '/v1/orders/:id',
    status: 200,
    latencyMs: 3.25,
    ip: '10.0.0.1',
    userAgent: 'curl/8',
    outcome: 'success',
    ...over,
  };
}

describe('latency histogram', () => {
  it('puts each latency in the bucket whose bounds hold it', () => {
    expect(bucketOf(0)).toBe(0);
    expect(bucketOf(0.49)).toBe(0);
    expect(bucketOf(0.5)).toBe(1);
    expect(bucketOf(99.9)).toBe(LOWER_BOUNDS_MS.indexOf(75));
    expect(bucketOf(1e9)).toBe(BUCKETS - 1);
  });

  it('estimates quantiles inside the bucket of the true value', () => {
    const values = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 400);
    const hist = emptyHistogram();
    for (const v of values) hist[bucketOf(v)] = (hist[bucketOf(v)] ?? 0) + 1;
    const sorted = [...values].sort((a, b) => a - b);
    for (const q of [0.5, 0.95, 0.99]) {
      const exact = sorted[Math.ceil(q * sorted.length) - 1] ?? 0;
      expect(bucketOf(quantile(hist, q) ?? -1)).toBe(bucketOf(exact));
    }
    expect(quantile(emptyHistogram(), 0.5)).toBeNull();
  });
});

describe('route normalisation', () => {
  it('normalises the path when there is no router template', () => {
    expect(routeOf(undefined, '/v1/orders/42?x=1')).toBe('/v1/orders/{id}');
  });

  it('caps a long template at 200 characters without splitting one', () => {
    const route = routeOf(`/${'€'.repeat(300)}`, '/ignored');
    expect(Array.from(route)).toHaveLength(200);
    expect(route).toBe(`/${'€'.repeat(199)}`);
  });

  it('prefers the router template', () => {
    expect(routeOf('/v1/orders/:id', '/v1/orders/42?x=1')).toBe('/v1/orders/:id');
  });

  it('replaces numeric, UUID, hex and long token segments with {id}', () => {
    expect(normalizePath('/v1/orders/42/items/7?expand=1')).toBe('/v1/orders/{id}/items/{id}');
    expect(normalizePath('/u/3f2a1b4c-1d2e-4f5a-8b9c-0d1e2f3a4b5c')).toBe('/u/{id}');
    expect(normalizePath('/blobs/deadbeefdeadbeefdeadbeef')).toBe('/blobs/{id}');
    expect(normalizePath('/t/a1B2c3D4e5F6g7H8i9')).toBe('/t/{id}');
    expect(normalizePath('/health/ready')).toBe('/health/ready');
    expect(normalizePath('/a/b/c/d/e/f/g/h/i/j/k/l/m/n').split('/')).toHaveLength(14);
  });
});

describe('job payload', () => {
  it('lists every org of a batch, however many, and still unpacks', async () => {
    // A full buffer batch (5,000 events), each of another org.
    const events = Array.from({ length: 5000 }, (_, i) =>
      usageEvent({ orgId: crypto.randomUUID(), keyId: crypto.randomUUID(), occurredAt: 1 }, i),
    );
    const job = await packEvents(events);
    expect(new Set(job.orgs)).toEqual(new Set(events.map((e) => e.orgId)));
    const unpacked = unpackJob(JSON.parse(JSON.stringify(job)));
    expect('payload' in unpacked && unpacked.payload.id.length).toBe(5000);
  });

  it('round-trips events through the columnar encoding and validates', () => {
    const events = [
      event(),
      event({ keyId: KEY_B, userAgent: null, ip: null, outcome: 'revoked', status: 401 }),
    ];
    const payload = usagePayloadSchema.parse(JSON.parse(JSON.stringify(encodePayload(events))));
    expect(payload.keys).toHaveLength(2);
    expect(decodePayload(payload)).toEqual(events);
  });

  it('rejects payloads with ragged columns or bad indexes', () => {
    const payload = encodePayload([event(), event()]);
    expect(usagePayloadSchema.safeParse({ ...payload, s: [200] }).success).toBe(false);
    expect(usagePayloadSchema.safeParse({ ...payload, k: [0, 5] }).success).toBe(false);
    expect(usagePayloadSchema.safeParse({ ...payload, v: 2 }).success).toBe(false);
    expect(usagePayloadSchema.safeParse({ ...payload, id: [KEY_B, 'nope'] }).success).toBe(false);
    expect(usagePayloadSchema.safeParse({ ...payload, ip: ['10.0.0.1', '10.0.0'] }).success).toBe(
      false,
    );
    expect(usagePayloadSchema.safeParse({ ...payload, l: [1, -1] }).success).toBe(false);
    expect(usagePayloadSchema.safeParse({ ...payload, ip: [null, 'fe80::1%eth0'] }).success).toBe(
      false,
    );
    expect(usagePayloadSchema.safeParse({ ...payload, m: ['GET', ''] }).success).toBe(false);
    expect(usagePayloadSchema.safeParse({ ...payload, o: [0, 9] }).success).toBe(false);
    expect(usagePayloadSchema.safeParse({ ...payload, t: [1.5, 2] }).success).toBe(false);
  });
});

describe('aggregation', () => {
  it('counts successes and denials apart and follows the latest success for last IP', () => {
    const base = Date.UTC(2026, 10, 24, 10, 0, 0);
    const rollups = aggregate(
      encodePayload([
        event({ occurredAt: base + 2, ip: '10.0.0.2', status: 500 }),
        event({ occurredAt: base + 1, ip: '10.0.0.1', status: 404 }),
        event({ occurredAt: base + 3, outcome: 'revoked', status: 401, ip: '10.9.9.9' }),
        event({ keyId: KEY_B, occurredAt: base + 3600_000 }),
      ]),
    );
    expect(rollups.totals.map((t) => t.keyId)).toEqual([KEY_A, KEY_B]);
    expect(rollups.totals[0]).toMatchObject({
      requests: 2,
      errors4xx: 1,
      errors5xx: 1,
      denied: 1,
      lastUsedIp: '10.0.0.2',
      lastUsedAt: new Date(base + 2),
      firstUsedAt: new Date(base + 1),
      lastDeniedAt: new Date(base + 3),
    });
    expect(rollups.hourly.map((h) => [h.keyId, h.period])).toEqual([
      [KEY_A, '2026-11-24T10:00:00.000Z'],
      [KEY_B, '2026-11-24T11:00:00.000Z'],
    ]);
    expect(rollups.daily[0]?.hist.reduce((a, b) => a + b, 0)).toBe(2);
    expect(rollups.routes).toHaveLength(2);
  });
});

describe('text and IPs from the outside', () => {
  it('drops NUL characters and never splits a character when truncating', async () => {
    const { normalizeIp } = await import('./usage.service.ts');
    const { cleanText } = await import('./usage.types.ts');
    expect(cleanText('a\u0000b', 10)).toBe('ab');
    expect(cleanText('😀😀😀', 2)).toBe('😀😀');
    expect(cleanText('x\uD800y', 10)).toBe('xy');
    expect(normalizeIp('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(normalizeIp('2001:db8::1')).toBe('2001:db8::1');
    expect(normalizeIp('garbage')).toBeNull();
    expect(normalizeIp('127.0.0.1')).toBe('127.0.0.1');
    expect(normalizeIp('::ffff:7f00:1')).toBe('::ffff:7f00:1');
    expect(normalizeIp('::ffff:garbage')).toBeNull();
    expect(normalizeIp('::ffff:10.0.0.256')).toBeNull();
    expect(normalizeIp('fe80::1%eth0')).toBe('fe80::1');
    expect(normalizeIp('::ffff:10.0.0.1%eth0')).toBe('10.0.0.1');
    expect(normalizeIp('%eth0')).toBeNull();
    expect(normalizeIp('')).toBeNull();
  });
});

describe('partition names', () => {
  it('reads the month of a month partition, and none from any other name', () => {
    expect(partitionMonth(partitionName(2026, 3))).toEqual({ year: 2026, month: 3 });
    expect(partitionMonth('api_key_usage_events_default')).toBeNull();
  });
});

describe('capRoutes', () => {
  const row = (route: string, firstAt: number, requests = 1) => ({
    keyId: 'k',
    orgId: 'o',
    day: '2026-12-02',
    method: 'GET',
    route,
    requests,
    errors: 0,
    latencySumMs: requests,
    firstAt,
  });

  it('keeps the routes that appeared first, as the rebuild does, and sums the rest into (other)', () => {
    const capped = capRoutes([row('/a', 20), row('/b', 30, 2), row('/z', 10)], [], 2);
    expect(capped.map((r) => [r.route, r.requests])).toEqual([
      ['(other)', 2],
      ['/a', 1],
      ['/z', 1],
    ]);
  });

  it('counts the stored routes of the day against the cap, and lets them grow', () => {
    const known = [{ keyId: 'k', day: '2026-12-02', method: 'GET', route: '/known' }];
    const capped = capRoutes([row('/known', 50, 3), row('/new', 5)], known, 1);
    expect(capped.map((r) => [r.route, r.requests])).toEqual([
      ['(other)', 1],
      ['/known', 3],
    ]);
  });
});
