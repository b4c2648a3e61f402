import { describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../keys/key-format.ts';
import { LeakScanner, TEST_PEPPER } from './leak-scan.ts';

describe('leak scanner', () => {
  it('finds any key-shaped string except the allowed one', () => {
    const scanner = new LeakScanner();
    const { plaintext } = generateKey('live');
    expect(scanner.scan(`{"key":"${plaintext}"}`)).toHaveLength(1);
    expect(scanner.scan(`{"key":"${plaintext}"}`, [plaintext])).toEqual([]);
  });

  it('finds the hash of a known key in hex and base64', () => {
    const scanner = new LeakScanner();
    const { plaintext } = generateKey('test');
    scanner.remember(plaintext);
    const hash = hashKey(TEST_PEPPER, plaintext);
    expect(scanner.scan(`\\x${hash.toString('hex')}`)).toHaveLength(1);
    expect(scanner.scan(hash.toString('base64'))).toHaveLength(1);
    expect(scanner.scan('nothing here')).toEqual([]);
  });
});
