/**
 * Slots for streamed exports (CSV, NDJSON): at most `max` at once per instance and `perOrg` per
 * org. Exports read through a pool of their own, sized to `max`, so a slow or paused export never
 * holds a connection that key lookups, key changes, analytics reads or ingest need (SPEC §9).
 */
export type ExportRefusal = 'instance' | 'org';

export class ExportSlots {
  readonly max: number;
  readonly perOrg: number;
  private readonly byOrg = new Map<string, number>();
  private inUse = 0;
  readonly refused: Record<ExportRefusal, number> = { instance: 0, org: 0 };
  /** Exports cut short, by reason (slow_reader, max_duration, idle). */
  readonly cut: Record<string, number> = {};

  constructor(limits: { max: number; perOrg: number }) {
    this.max = limits.max;
    this.perOrg = Math.min(limits.perOrg, limits.max);
  }

  get used(): number {
    return this.inUse;
  }

  /** A release function (idempotent), or why no slot was given. */
  acquire(orgId: string): (() => void) | ExportRefusal {
    const mine = this.byOrg.get(orgId) ?? 0;
    if (this.inUse >= this.max) {
      this.refused.instance += 1;
      return 'instance';
    }
    if (mine >= this.perOrg) {
      this.refused.org += 1;
      return 'org';
    }
    this.inUse += 1;
    this.byOrg.set(orgId, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse -= 1;
      const left = (this.byOrg.get(orgId) ?? 1) - 1;
      if (left > 0) this.byOrg.set(orgId, left);
      else this.byOrg.delete(orgId);
    };
  }
}
