import { afterEach, describe, expect, it, vi } from 'vitest';
import { GateRefusedError, KeyedGate } from './keyed-gate.ts';

afterEach(() => vi.useRealTimers());

describe('KeyedGate', () => {
  it('holds at most perKey per key, the others wait in arrival order', async () => {
    const gate = new KeyedGate({ perKey: 2, queuePerKey: 5, waitMs: 10_000 });
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
    const gate = new KeyedGate({ perKey: 1, queuePerKey: 1, waitMs: 10_000 });
    const held = await gate.acquire('a');
    const waiting = gate.acquire('a');
    await expect(gate.acquire('a')).rejects.toMatchObject({ reason: 'queue_full' });
    expect(gate.refused.queue_full).toBe(1);
    held();
    (await waiting)();
  });

  it('refuses a wait longer than waitMs and forgets it', async () => {
    vi.useFakeTimers();
    const gate = new KeyedGate({ perKey: 1, queuePerKey: 4, waitMs: 1_000 });
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
    const gate = new KeyedGate({ perKey: 1, queuePerKey: 4, waitMs: 10_000 });
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
});
