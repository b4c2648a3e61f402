/**
 * Unknown keys cost Postgres a lookup each, and anyone can mint them (the checksum is public):
 * they must neither push real keys out of the cache nor turn one client into a stream of lookups.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, useTestDatabase, type TestApp } from '../testing/harness.ts';
import { createKey, createOrg, type TestKey, type TestOrg } from '../testing/factories.ts';
import { expectProblem } from '../testing/problem.ts';
import { generateKey } from './key-format.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let org: TestOrg;
let real: TestKey[];

beforeAll(async () => {
  app = await startTestApp(dbUrl(), {
    config: {
      trustProxy: true,
      keyCache: { size: 4, ttlMs: 30_000, negativeTtlMs: 30_000, negativeSize: 8 },
      authMisses: { perSecond: 0.001, burst: 5 },
      usage: { tracking: false, flushIntervalMs: 250, batchSize: 5000, bufferMax: 10_000 },
    },
  });
  org = await createOrg(app.client, 'Misses');
  real = [];
  for (const name of ['a', 'b', 'c'])
    real.push(await createKey(app.client, org, { name, scopes: ['keys:verify'] }));
});
afterAll(async () => app.close());

const from = (ip: string) => ({ 'x-forwarded-for': ip });
const minted = () => generateKey('live').plaintext;
const demo = (key: string, ip: string) =>
  app.client.get('/v1/demo/orders/1', { key, headers: from(ip) });

describe('unknown keys', () => {
  it('never evict real keys: after a stream of them, real keys are still served from memory', async () => {
    for (const k of real) expect((await demo(k.key, '10.0.0.1')).status).toBe(200);
    // 40 minted keys from 40 addresses (none rate limited): the cache holds 4 keys, 8 unknown.
    for (let i = 0; i < 40; i++) expect((await demo(minted(), `10.1.0.${i}`)).status).toBe(401);
    const before = app.kt.database.stats.count;
    for (const k of real) expect((await demo(k.key, '10.0.0.1')).status).toBe(200);
    expect(app.kt.database.stats.count).toBe(before);
  });

  it('are looked up at a bounded rate per client address: beyond it 429, counted in /metrics', async () => {
    const ip = '10.2.0.1';
    for (let i = 0; i < 5; i++) expect((await demo(minted(), ip)).status).toBe(401);
    const refused = await demo(minted(), ip);
    expectProblem(refused, 429, 'rate_limited');
    expect(refused.headers.get('retry-after')).toBeTruthy();
    expect(refused.text).not.toContain('sk_live_');
    // A known, cached key from the same address still works: hits take no token.
    expect((await demo(real[0]!.key, ip)).status).toBe(200);
    // Another address has its own allowance.
    expect((await demo(minted(), '10.2.0.2')).status).toBe(401);
    const metrics = (await app.client.get('/metrics')).text;
    expect(metrics).toMatch(/keytrail_auth_misses_refused_total [1-9]/);
  });

  it('never hold back real keys, cached or not: only unknown ones take tokens', async () => {
    const ip = '10.4.0.1';
    // Eight real keys through a cache of four: most lookups miss, none is refused.
    const many: TestKey[] = [];
    for (let i = 0; i < 8; i++) many.push(await createKey(app.client, org, { name: `real ${i}` }));
    for (let round = 0; round < 2; round++)
      for (const k of many) expect((await demo(k.key, ip)).status).toBe(200);
    // Its bucket is still full: five unknown keys before the first refusal.
    for (let i = 0; i < 5; i++) expect((await demo(minted(), ip)).status).toBe(401);
    expectProblem(await demo(minted(), ip), 429, 'rate_limited');
  });

  it('count IPv6 clients per /64: rotating addresses inside one gains nothing', async () => {
    for (let i = 0; i < 5; i++)
      expect((await demo(minted(), `2001:db8:5:6::${(i + 1).toString(16)}`)).status).toBe(401);
    expectProblem(await demo(minted(), '2001:db8:5:6:ffff::1'), 429, 'rate_limited');
    expect((await demo(minted(), '2001:db8:5:7::1')).status).toBe(401);
  });

  it('also bound the keys a caller asks POST /api/keys/verify about', async () => {
    const ip = '10.3.0.1';
    const verify = (key: string) =>
      app.client.post('/api/keys/verify', { key: real[1]!.key, headers: from(ip), body: { key } });
    // The caller's own key is cached already; each minted key to verify takes a token.
    expect((await verify(real[2]!.key)).body.code).toBe('VALID');
    for (let i = 0; i < 5; i++) expect((await verify(minted())).body.code).toBe('NOT_FOUND');
    expectProblem(await verify(minted()), 429, 'rate_limited');
    // A cached key can still be verified (an uncached one waits for the bucket to refill).
    expect((await verify(real[2]!.key)).body.code).toBe('VALID');
  });
});
