import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { detachedFromRequest } from '../platform/db-scope.ts';
import type { Logger } from '../platform/logger.ts';
import { packEvents, type UsageJob } from './usage.jobs.ts';
import type { UsageEvent } from './usage.types.ts';

/** Delivers one flush to the queue; rejects when the queue is unreachable. */
export type UsageSink = (job: UsageJob) => Promise<void>;

export type BufferOptions = {
  flushIntervalMs: number;
  /** Events per job; reaching it triggers a flush before the interval ends. */
  maxBatch: number;
  /** Bound on events held in memory; beyond it new events are dropped and counted. */
  maxBuffered: number;
  maxBackoffMs: number;
};

export type BufferStats = { enqueued: number; dropped: number; flushes: number; failures: number };

/**
 * The in-process usage buffer. `record` is synchronous and never throws or awaits: the request
 * path only appends to an array. A timer (or a full batch) flushes up to `maxBatch` events as
 * one job. When the sink fails, events stay buffered (up to the bound) and flushing backs off
 * exponentially; every event that cannot be kept is counted in `stats.dropped`.
 */
export class UsageBuffer {
  readonly stats: BufferStats = { enqueued: 0, dropped: 0, flushes: 0, failures: 0 };
  readonly #options: BufferOptions;
  readonly #sink: UsageSink;
  readonly #logger: Logger;
  #events: UsageEvent[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #backoffMs = 0;
  #stopped = false;

  constructor(sink: UsageSink, options: BufferOptions, logger: Logger) {
    this.#sink = sink;
    this.#options = options;
    this.#logger = logger;
    this.#schedule(options.flushIntervalMs);
  }

  get size(): number {
    return this.#events.length;
  }

  record(event: UsageEvent): void {
    if (this.#events.length >= this.#options.maxBuffered) {
      this.stats.dropped += 1;
      return;
    }
    this.#events.push(event);
    if (this.#events.length === this.#options.maxBatch && this.#backoffMs === 0) {
      this.#schedule(0);
    }
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    // Not in the context of the request whose event filled the batch: the flusher outlives it.
    this.#timer = detachedFromRequest(() => setTimeout(() => void this.#tick(), delayMs));
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    this.#timer = undefined;
    await this.flush();
    const full = this.#events.length >= this.#options.maxBatch;
    this.#schedule(
      this.#backoffMs > 0 ? this.#backoffMs : full ? 0 : this.#options.flushIntervalMs,
    );
  }

  /** Sends one batch (at most `maxBatch` events). Concurrent calls share the flush in flight. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flushOnce().finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  async #flushOnce(): Promise<void> {
    if (this.#events.length === 0) return;
    const batch = this.#events.splice(0, this.#options.maxBatch);
    // Ids are given once, before the first send: a batch retried after an ambiguous failure
    // (sent, but the reply lost) carries the same ids, so the worker stores it once.
    // One random fill per batch: uuid's default draws from the OS for every id (measured: 6 % of
    // a tracked server's CPU).
    const random = randomBytes(16 * batch.length);
    batch.forEach((e, i) => {
      if (e.eventId === '')
        e.eventId = uuidv7({ msecs: e.occurredAt, random: random.subarray(16 * i, 16 * i + 16) });
    });
    try {
      await this.#sink(await packEvents(batch));
      this.stats.enqueued += batch.length;
      this.stats.flushes += 1;
      this.#backoffMs = 0;
    } catch (error) {
      this.stats.failures += 1;
      this.#requeue(batch);
      const next = Math.min(Math.max(this.#backoffMs * 2, 100), this.#options.maxBackoffMs);
      if (this.#backoffMs === 0) {
        this.#logger.warn(
          { err: String(error), buffered: this.#events.length },
          'usage flush failed; retrying with backoff',
        );
      }
      this.#backoffMs = next;
    }
  }

  /** Puts a failed batch back in front, keeping the oldest events, within the bound. */
  #requeue(batch: UsageEvent[]): void {
    const room = this.#options.maxBuffered - this.#events.length;
    const kept = batch.slice(0, Math.max(0, room));
    this.stats.dropped += batch.length - kept.length;
    this.#events = kept.concat(this.#events);
  }

  /** Stops the timer and flushes what is buffered, retrying until `deadlineMs` has passed. */
  async stop(deadlineMs = 5_000): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    const deadline = Date.now() + deadlineMs;
    while (this.#events.length > 0 && Date.now() < deadline) {
      await this.flush();
      if (this.#backoffMs > 0)
        await new Promise((r) => setTimeout(r, Math.min(this.#backoffMs, 500)));
    }
    await this.#flushing;
    if (this.#events.length > 0) {
      this.stats.dropped += this.#events.length;
      this.#logger.error({ dropped: this.#events.length }, 'usage events dropped at shutdown');
      this.#events = [];
    }
  }
}
