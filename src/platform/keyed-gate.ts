/**
 * A semaphore per key (an org): at most `perKey` holders at once, up to `queuePerKey` waiting in
 * arrival order, each for at most `waitMs`. Waiters hold nothing (no connection), so one key's
 * queue never takes what another key needs; a full queue or a wait past `waitMs` is refused.
 */
export type GateLimits = { perKey: number; queuePerKey: number; waitMs: number };

export class GateRefusedError extends Error {
  override name = 'GateRefusedError';
  readonly reason: 'queue_full' | 'wait_timeout';
  constructor(reason: 'queue_full' | 'wait_timeout') {
    super(`refused: ${reason}`);
    this.reason = reason;
  }
}

type Waiter = { grant(): void };
type Entry = { running: number; waiting: Waiter[] };

export class KeyedGate {
  readonly limits: GateLimits;
  readonly refused = { queue_full: 0, wait_timeout: 0 };
  private readonly entries = new Map<string, Entry>();

  constructor(limits: GateLimits) {
    this.limits = limits;
  }

  /** Holders across all keys. */
  get running(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.running;
    return n;
  }

  /** Waiters across all keys. */
  get waiting(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.waiting.length;
    return n;
  }

  /**
   * Resolves with an idempotent release once a slot is held. Rejects with GateRefusedError, or
   * with `signal`'s reason when it aborts while waiting (the wait is then withdrawn).
   */
  acquire(key: string, signal?: AbortSignal): Promise<() => void> {
    const entry = this.entries.get(key) ?? { running: 0, waiting: [] };
    this.entries.set(key, entry);
    if (entry.running < this.limits.perKey) {
      entry.running += 1;
      return Promise.resolve(this.releaser(key, entry));
    }
    if (entry.waiting.length >= this.limits.queuePerKey) {
      this.refused.queue_full += 1;
      return Promise.reject(new GateRefusedError('queue_full'));
    }
    return new Promise((resolve, reject) => {
      const withdraw = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const at = entry.waiting.indexOf(waiter);
        if (at !== -1) entry.waiting.splice(at, 1);
        this.forgetIfIdle(key, entry);
      };
      const onAbort = () => {
        withdraw();
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const timer = setTimeout(() => {
        withdraw();
        this.refused.wait_timeout += 1;
        reject(new GateRefusedError('wait_timeout'));
      }, this.limits.waitMs);
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser(key, entry));
        },
      };
      entry.waiting.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private releaser(key: string, entry: Entry): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = entry.waiting.shift();
      // The slot passes straight to the next waiter: nobody arriving meanwhile can jump ahead.
      if (next) next.grant();
      else {
        entry.running -= 1;
        this.forgetIfIdle(key, entry);
      }
    };
  }

  private forgetIfIdle(key: string, entry: Entry): void {
    if (entry.running === 0 && entry.waiting.length === 0) this.entries.delete(key);
  }
}
