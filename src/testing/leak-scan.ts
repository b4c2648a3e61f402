import { hashKey, KEY_LIKE_RE } from '../keys/key-format.ts';

export const TEST_PEPPER = 'test-pepper-0123456789abcdef0123456789abcdef';

/**
 * Remembers every plaintext key the suite has been shown and fails on any key-shaped string,
 * or the hash of a known key (hex or base64), found where it does not belong.
 */
export class LeakScanner {
  readonly #known = new Set<string>();
  readonly #hashes = new Map<string, string>();

  remember(plaintext: string): void {
    if (this.#known.has(plaintext)) return;
    this.#known.add(plaintext);
    const hash = hashKey(TEST_PEPPER, plaintext);
    const label = `key hash of ${plaintext.slice(0, 16)}…`;
    for (const encoding of ['hex', 'base64', 'base64url'] as const) {
      this.#hashes.set(hash.toString(encoding), label);
    }
  }

  /** Returns a description of every leak in `text`, ignoring the `allowed` plaintexts. */
  scan(text: string, allowed: readonly string[] = []): string[] {
    const leaks = new Set<string>();
    for (const match of text.matchAll(KEY_LIKE_RE)) {
      if (!allowed.includes(match[0])) leaks.add(`plaintext key ${match[0].slice(0, 16)}…`);
    }
    for (const [hash, label] of this.#hashes) {
      if (text.includes(hash)) leaks.add(label);
    }
    return [...leaks];
  }
}

export const leakScanner = new LeakScanner();
