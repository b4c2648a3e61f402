import { describe, expect, it } from 'vitest';
import { KeyCache } from './key-cache.ts';
import type { AuthRecord } from './keys.types.ts';

const record = (id: string): AuthRecord => ({
  id,
  orgId: 'org-1',
  environment: 'live',
  prefix: 'sk_live_abcdefgh',
  scopes: [],
  expiresAt: null,
  revokedAt: null,
  limits: null,
});
const newCache = () =>
  new KeyCache({ size: 100, ttlMs: 30_000, negativeTtlMs: 2_000, negativeSize: 100 });

/** A load the test resolves when it wants, counting how often it ran. */
function controlledLoad(value: AuthRecord | null) {
  let resolve: () => void = () => undefined;
  const gate = new Promise<void>((r) => (resolve = r));
  const load = {
    calls: 0,
    release: resolve,
    fn: async () => {
      load.calls += 1;
      await gate;
      return value;
    },
  };
  return load;
}

describe('KeyCache', () => {
  it('loads a key once for concurrent lookups, then answers from memory', async () => {
    const cache = newCache();
    const load = controlledLoad(record('k1'));
    const both = Promise.all([cache.get('h1', load.fn), cache.get('h1', load.fn)]);
    load.release();
    expect(await both).toEqual([record('k1'), record('k1')]);
    expect(await cache.get('h1', load.fn)).toEqual(record('k1'));
    expect(load.calls).toBe(1);
    expect(cache.stats).toEqual({ hits: 1, misses: 2 });
    expect(cache.size).toBe(1);
  });

  it('remembers an unknown key as unknown', async () => {
    const cache = newCache();
    const load = controlledLoad(null);
    load.release();
    expect(await cache.get('nope', load.fn)).toBeNull();
    expect(cache.lookup('nope')).toBeNull();
    expect(load.calls).toBe(1);
  });

  it('does not store what a lookup read before an invalidation that happened meanwhile', async () => {
    const cache = newCache();
    const stale = controlledLoad(record('k1'));
    const pending = cache.get('h1', stale.fn);
    cache.invalidate('k1');
    stale.release();
    await pending;
    expect(cache.lookup('h1')).toBeUndefined();
  });

  it('forgets everything on clear, including a lookup in flight', async () => {
    const cache = newCache();
    const first = controlledLoad(record('k1'));
    first.release();
    await cache.get('h1', first.fn);
    const inflight = controlledLoad(record('k2'));
    const pending = cache.get('h2', inflight.fn);
    cache.clear();
    expect(cache.size).toBe(0);
    inflight.release();
    await pending;
    expect(cache.lookup('h1')).toBeUndefined();
    expect(cache.lookup('h2')).toBeUndefined();
  });
});

describe('unknown keys', () => {
  it('live in their own bounded LRU: a stream of them never evicts a real key', async () => {
    const cache = new KeyCache({ size: 3, ttlMs: 30_000, negativeTtlMs: 2_000, negativeSize: 5 });
    for (const id of ['a', 'b', 'c'])
      await cache.get(`hash-${id}`, () => Promise.resolve(record(id)));
    for (let i = 0; i < 1000; i++) await cache.get(`unknown-${i}`, () => Promise.resolve(null));
    for (const id of ['a', 'b', 'c']) expect(cache.lookup(`hash-${id}`)?.id).toBe(id);
    expect(cache.size).toBe(3);
    expect(cache.unknownSize).toBe(5);
    // The latest unknown keys are remembered (no second lookup for a repeat).
    expect(cache.lookup('unknown-999')).toBeNull();
    expect(cache.lookup('unknown-0')).toBeUndefined();
  });
});
