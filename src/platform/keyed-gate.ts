/**
 * A fair semaphore per key (an org): at most `total` holders in all and `perKey` per key; up to
 * `queuePerKey` more of a key wait, each for at most `waitMs`. A freed slot goes to the waiting
 * key that holds the fewest slots (the earliest arrival among equals), so two busy orgs cannot
 * keep a third one out. Waiters hold nothing (no connection); a full queue, a wait past
 * `waitMs`, or an already aborted signal is refused.
 */
export type GateLimits = { total: number; perKey: number; queuePerKey: number; waitMs: number };

export class GateRefusedError extends Error {
  override name = 'GateRefusedError';
  readonly reason: 'queue_full' | 'wait_timeout';
  constructor(reason: 'queue_full' | 'wait_timeout') {
    super(`refused: ${reason}`);
    this.reason = reason;
  }
}

type Waiter = { key: string; grant(): void };

export class KeyedGate {
  readonly limits: GateLimits;
  readonly refused = { queue_full: 0, wait_timeout: 0 };
  private readonly runningByKey = new Map<string, number>();
  private readonly waitingByKey = new Map<string, number>();
  /** In arrival order. */
  private readonly queue: Waiter[] = [];
  private inUse = 0;

  constructor(limits: GateLimits) {
    this.limits = { ...limits, perKey: Math.min(limits.perKey, limits.total) };
  }

  get running(): number {
    return this.inUse;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Resolves with an idempotent release once a slot is held. Rejects with GateRefusedError, or
   * with `signal`'s reason when it aborts before a slot is given (the wait is then withdrawn).
   */
  acquire(key: string, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    // Waiters left in the queue are of keys at their own cap (the others were granted): a key
    // with none waiting may go ahead when a slot is free.
    if (this.canRun(key) && !this.waitingByKey.has(key)) {
      this.take(key);
      return Promise.resolve(this.releaser(key));
    }
    if ((this.waitingByKey.get(key) ?? 0) >= this.limits.queuePerKey) {
      this.refused.queue_full += 1;
      return Promise.reject(new GateRefusedError('queue_full'));
    }
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.dequeue(waiter);
      };
      const onAbort = () => {
        settle();
        reject(abortReason(signal));
        this.grantNext();
      };
      const timer = setTimeout(() => {
        settle();
        this.refused.wait_timeout += 1;
        reject(new GateRefusedError('wait_timeout'));
      }, this.limits.waitMs);
      const waiter: Waiter = {
        key,
        grant: () => {
          settle();
          this.take(key);
          resolve(this.releaser(key));
        },
      };
      this.queue.push(waiter);
      this.waitingByKey.set(key, (this.waitingByKey.get(key) ?? 0) + 1);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private canRun(key: string): boolean {
    return this.inUse < this.limits.total && (this.runningByKey.get(key) ?? 0) < this.limits.perKey;
  }

  private take(key: string): void {
    this.inUse += 1;
    this.runningByKey.set(key, (this.runningByKey.get(key) ?? 0) + 1);
  }

  private dequeue(waiter: Waiter): void {
    const at = this.queue.indexOf(waiter);
    if (at === -1) return;
    this.queue.splice(at, 1);
    const left = (this.waitingByKey.get(waiter.key) ?? 1) - 1;
    if (left > 0) this.waitingByKey.set(waiter.key, left);
    else this.waitingByKey.delete(waiter.key);
  }

  /** Grants free slots to the waiters of the keys holding the fewest (earliest first). */
  private grantNext(): void {
    while (this.inUse < this.limits.total) {
      let best: Waiter | undefined;
      let bestRunning = Infinity;
      for (const w of this.queue) {
        const running = this.runningByKey.get(w.key) ?? 0;
        if (running < this.limits.perKey && running < bestRunning) {
          best = w;
          bestRunning = running;
        }
      }
      if (!best) return;
      best.grant();
    }
  }

  private releaser(key: string): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse -= 1;
      const left = (this.runningByKey.get(key) ?? 1) - 1;
      if (left > 0) this.runningByKey.set(key, left);
      else this.runningByKey.delete(key);
      this.grantNext();
    };
  }
}

function abortReason(signal: AbortSignal | undefined): Error {
  return signal?.reason instanceof Error ? signal.reason : new Error('aborted');
}
