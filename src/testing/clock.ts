import type { Clock } from '../platform/clock.ts';

/** Real time plus an offset the test can advance, so expiry is tested without sleeping. */
export class TestClock implements Clock {
  offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
  advance(ms: number): void {
    this.offsetMs += ms;
  }
}
