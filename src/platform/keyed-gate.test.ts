import { afterEach, describe, expect, it, vi } from 'vitest';
import { GateRefusedError, KeyedGate } from './keyed-gate.ts';

afterEach(() => vi.useRealTimers());

describe('KeyedGate', () => {
  it('holds at most perKey per key, the others wait in arrival order', async () => {
    const gate = new KeyedGate({ total: 10, perKey: 2, queuePerKey: 5, waitMs: 10_000 });
    const a1 = await gate.acquire('a');
    const a2 = await gate.acquire('a');
    const order: number[] = [];
    const waits = [3, 4, 5].map((n) =>
      gate.acquire('a').then((release) => (order.push(n), release)),
    );
    // Another key is not held up by the first one's queue.
    const b1 = await gate.acquire('b');
    expect(gate.running).toBe(3);
    expect(gate.waiting).toBe(3);
    a1();
    a1(); // idempotent: a second call frees nothing more
    const r3 = await waits[0];
    expect(order).toEqual([3]);
    expect(gate.running).toBe(3);
    a2();
    r3?.();
    const rest = await Promise.all(waits.slice(1));
    expect(order).toEqual([3, 4, 5]);
    for (const release of [...rest, b1]) release();
    expect(gate.running).toBe(0);
    expect(gate.waiting).toBe(0);
  });

  it('refuses at once when the key queue is full', async () => {
    const gate = new KeyedGate({ total: 10, perKey: 1, queuePerKey: 1, waitMs: 10_000 });
    const held = await gate.acquire('a');
    const waiting = gate.acquire('a');
    await expect(gate.acquire('a')).rejects.toMatchObject({ reason: 'queue_full' });
    expect(gate.refused.queue_full).toBe(1);
    held();
    (await waiting)();
  });

  it('refuses a wait longer than waitMs and forgets it', async () => {
    vi.useFakeTimers();
    const gate = new KeyedGate({ total: 10, perKey: 1, queuePerKey: 4, waitMs: 1_000 });
    const held = await gate.acquire('a');
    const waiting = gate.acquire('a');
    vi.advanceTimersByTime(1_001);
    await expect(waiting).rejects.toBeInstanceOf(GateRefusedError);
    expect(gate.waiting).toBe(0);
    expect(gate.refused.wait_timeout).toBe(1);
    held();
    expect(gate.running).toBe(0);
  });

  it('withdraws a waiter whose signal aborts, and its turn goes to the next', async () => {
    const gate = new KeyedGate({ total: 10, perKey: 1, queuePerKey: 4, waitMs: 10_000 });
    const held = await gate.acquire('a');
    const controller = new AbortController();
    const leaving = gate.acquire('a', controller.signal);
    const staying = gate.acquire('a');
    controller.abort(new Error('client left'));
    await expect(leaving).rejects.toThrow('client left');
    held();
    (await staying)();
    expect(gate.running).toBe(0);
  });

  it('refuses at once a signal already aborted (a client gone during authentication)', async () => {
    const gate = new KeyedGate({ total: 10, perKey: 1, queuePerKey: 4, waitMs: 10_000 });
    const held = await gate.acquire('a');
    const controller = new AbortController();
    controller.abort(new Error('gone'));
    await expect(gate.acquire('a', controller.signal)).rejects.toThrow('gone');
    await expect(gate.acquire('b', controller.signal)).rejects.toThrow('gone');
    expect(gate.waiting).toBe(0);
    held();
  });

  it('gives a freed slot to the waiting key holding the fewest, so two busy keys cannot starve a third', async () => {
    const gate = new KeyedGate({ total: 4, perKey: 2, queuePerKey: 8, waitMs: 10_000 });
    const a = [await gate.acquire('a'), await gate.acquire('a')];
    const b = [await gate.acquire('b'), await gate.acquire('b')];
    const granted: string[] = [];
    const wait = (key: string) =>
      gate.acquire(key).then((release) => {
        granted.push(key);
        return release;
      });
    const waits = [wait('a'), wait('b'), wait('a'), wait('c')];
    expect(gate.running).toBe(4);
    a[0]?.(); // a: 1 running; c (0 running) goes first although it came last
    await Promise.resolve();
    expect(granted).toEqual(['c']);
    b[0]?.(); // b: 1, a: 1, c: 1 — the earliest of the least served: a
    await Promise.resolve();
    expect(granted).toEqual(['c', 'a']);
    for (const release of [a[1], b[1]]) release?.();
    const all = await Promise.all(waits);
    expect(granted).toEqual(['c', 'a', 'b', 'a']);
    for (const release of all) release();
    expect(gate.running).toBe(0);
  });

  it('never holds more than total, and a key alone may use up to its own cap', async () => {
    const gate = new KeyedGate({ total: 3, perKey: 2, queuePerKey: 8, waitMs: 10_000 });
    const held = [await gate.acquire('a'), await gate.acquire('a'), await gate.acquire('b')];
    let third = false;
    const pending = gate.acquire('c').then((r) => ((third = true), r));
    await Promise.resolve();
    expect(third).toBe(false);
    held[2]?.();
    (await pending)();
    held[0]?.();
    held[1]?.();
    expect(gate.running).toBe(0);
  });
});
