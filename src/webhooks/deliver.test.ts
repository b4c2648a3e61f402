import { describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { startReceiver } from '../testing/receiver.ts';
import { attempt } from './deliver.ts';
import { generateSecret, secretBox } from './secrets.ts';

const secret = generateSecret();
const outgoing = (url: string) => ({
  url,
  messageId: '0190b5b4-0000-7000-8000-000000000001',
  body: '{"type":"key.created"}',
  secrets: [secret],
  at: new Date(),
});
const options = (allowLoopback: boolean, timeoutMs: number) => ({
  addresses: { allowLoopback, allowedNetworks: [] },
  timeoutMs,
});

describe('one delivery attempt', () => {
  it('refuses an address the policy forbids without sending anything', async () => {
    const r = await startReceiver();
    try {
      const result = await attempt(outgoing(r.url), options(false, 2_000));
      expect(result).toMatchObject({ statusCode: null, error: 'address_not_allowed' });
      expect(result.detail).toMatch(/loopback/);
      expect(r.received).toHaveLength(0);
    } finally {
      await r.close();
    }
  });

  it('gives up at the deadline on a receiver that never answers', async () => {
    const r = await startReceiver(() => 'hang');
    try {
      const result = await attempt(outgoing(r.url), options(true, 300));
      expect(result.statusCode).toBeNull();
      expect(result.error).toBe('timeout');
      expect(result.latencyMs).toBeGreaterThanOrEqual(250);
    } finally {
      r.release();
      await r.close();
    }
  });

  it('signs what it sends; the receiver verifies it', async () => {
    const r = await startReceiver();
    try {
      const result = await attempt(outgoing(r.url), options(true, 2_000));
      expect(result).toMatchObject({ statusCode: 200, error: null });
      const got = r.received[0];
      expect(got?.headers['webhook-id']).toBe('0190b5b4-0000-7000-8000-000000000001');
      expect(
        new Webhook(secret).verify(got?.body ?? '', got?.headers as Record<string, string>),
      ).toEqual({ type: 'key.created' });
    } finally {
      await r.close();
    }
  });
});

describe('secrets at rest', () => {
  it('seal and open with the pepper; another pepper or a flipped byte cannot open them', () => {
    const box = secretBox('p'.repeat(32));
    const sealed = box.seal(secret);
    expect(sealed.toString('latin1')).not.toContain(secret.slice(6));
    expect(box.open(sealed)).toBe(secret);
    expect(() => secretBox('q'.repeat(32)).open(sealed)).toThrow();
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 1] = (flipped.at(-1) ?? 0) ^ 1;
    expect(() => box.open(flipped)).toThrow();
  });
});
