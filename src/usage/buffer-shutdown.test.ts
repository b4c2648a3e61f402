import { describe, expect, it } from 'vitest';
import { usageEvent } from '../testing/factories.ts';
import { capturingLogger } from '../testing/logs.ts';
import { UsageBuffer, type UsageSink } from './usage.buffer.ts';
import type { UsageJob } from './usage.jobs.ts';

const at = {
  orgId: '00000000-0000-4000-8000-000000000001',
  keyId: '00000000-0000-4000-8000-000000000002',
};
const options = { flushIntervalMs: 60_000, maxBatch: 100, maxBuffered: 1_000, maxBackoffMs: 20 };

function fill(buffer: UsageBuffer, count: number): void {
  const base = Date.now();
  for (let i = 0; i < count; i++) buffer.record(usageEvent({ ...at, occurredAt: base + i }, i));
}

describe('usage buffer shutdown', () => {
  it('retries a failing queue until the deadline, then counts and logs every undelivered event', async () => {
    const { logger, lines } = capturingLogger();
    let attempts = 0;
    const sink: UsageSink = () => {
      attempts += 1;
      return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
    };
    const buffer = new UsageBuffer(sink, options, logger);
    fill(buffer, 250);
    await buffer.stop(300);
    expect(attempts).toBeGreaterThan(1);
    expect(buffer.size).toBe(0);
    expect(buffer.stats).toMatchObject({ enqueued: 0, dropped: 250 });
    const line = lines.find((l) => l.includes('usage events dropped at shutdown'));
    expect(line).toContain('"dropped":250');
  });

  it('delivers everything when the queue comes back before the deadline', async () => {
    const { logger, lines } = capturingLogger();
    const delivered: UsageJob[] = [];
    let failuresLeft = 2;
    const sink: UsageSink = (job) => {
      if (failuresLeft-- > 0) return Promise.reject(new Error('queue restarting'));
      delivered.push(job);
      return Promise.resolve();
    };
    const buffer = new UsageBuffer(sink, options, logger);
    fill(buffer, 250);
    await buffer.stop(10_000);
    expect(buffer.stats).toMatchObject({ enqueued: 250, dropped: 0 });
    expect(delivered.reduce((n, job) => n + job.n, 0)).toBe(250);
    expect(lines.some((l) => l.includes('dropped at shutdown'))).toBe(false);
  });
});
