import { describe, expect, it } from 'vitest';
import { parseNetworks, pinnedLookup, refusal, resolveAllowed, urlRefusal } from './ssrf.ts';

const closed = { allowLoopback: false, allowedNetworks: [] };

describe('webhook address policy (SSRF)', () => {
  it('allows public unicast addresses only, by default', () => {
    for (const ok of ['8.8.8.8', '1.1.1.1', '2606:4700::1111'])
      expect(refusal(ok, closed, 443)).toBeNull();
    for (const bad of [
      '127.0.0.1',
      '127.1.2.3',
      '::1',
      '10.0.0.1',
      '172.16.0.1',
      '192.168.0.1',
      '169.254.169.254',
      'fe80::1',
      'fd00::1',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      '64:ff9b::a00:1',
      '100.64.0.1',
      '0.0.0.0',
      '::',
      '224.0.0.1',
      '255.255.255.255',
      '2001:db8::1',
      '::7f00:1', // IPv4-compatible 127.0.0.1
      '::a9fe:a9fe', // IPv4-compatible 169.254.169.254
      '100::1', // discard-only
    ]) {
      expect(refusal(bad, closed, 443), bad).toMatch(/not allowed/);
    }
  });

  it('lets the operator allow loopback, or chosen networks, and nothing beside them', () => {
    const loop = { allowLoopback: true, allowedNetworks: [] };
    expect(refusal('127.0.0.1', loop, 443)).toBeNull();
    expect(refusal('::1', loop, 443)).toBeNull();
    expect(refusal('10.0.0.1', loop, 443)).toMatch(/private/);
    const nets = {
      allowLoopback: false,
      allowedNetworks: parseNetworks('10.20.0.0/16, fd12::/16'),
    };
    expect(refusal('10.20.9.9', nets, 443)).toBeNull();
    expect(refusal('fd12::5', nets, 443)).toBeNull();
    expect(refusal('10.21.0.1', nets, 443)).toMatch(/private/);
    expect(refusal('127.0.0.1', nets, 443)).toMatch(/loopback/);
    expect(refusal('10.20.9.9', nets, 8443)).toBe('private address not allowed on port 8443');
    expect(() => parseNetworks('10.0.0.0/33')).toThrow(/not a CIDR/);
    expect(() => parseNetworks('example.com')).toThrow(/not a CIDR/);
    expect(parseNetworks('')).toEqual([]);
  });

  it('accepts https, and http to loopback only when loopback is allowed', () => {
    const loop = { allowLoopback: true, allowedNetworks: [] };
    expect(urlRefusal('https://hooks.example.com/x', closed)).toBeNull();
    expect(urlRefusal('http://hooks.example.com/x', closed)).toMatch(/https/);
    expect(urlRefusal('http://hooks.example.com/x', loop)).toMatch(/https/);
    expect(urlRefusal('http://127.0.0.1:9/x', loop)).toBeNull();
    expect(urlRefusal('http://localhost:9/x', loop)).toBeNull();
    expect(urlRefusal('http://[::1]:9/x', loop)).toBeNull();
    expect(urlRefusal('http://127.0.0.1:9/x', closed)).toMatch(/https/);
    expect(urlRefusal('https://localhost/x', closed)).toMatch(/loopback/);
    // Subdomains of localhost are loopback at delivery; saving says so at once.
    expect(urlRefusal('https://hook.localhost/x', closed)).toMatch(/loopback/);
    expect(urlRefusal('https://a.b.LOCALHOST./x', closed)).toMatch(/loopback/);
    expect(urlRefusal('http://hook.localhost:9/x', loop)).toBeNull();
    expect(urlRefusal('https://localhost.example.com/x', closed)).toBeNull();
    expect(urlRefusal('https://2130706433/', closed)).toMatch(/loopback/); // 127.0.0.1 in decimal
    expect(urlRefusal('https://0x7f.1/', closed)).toMatch(/loopback/);
  });

  it('checks what a name resolves to at delivery time (DNS rebinding)', async () => {
    const dns = { signal: AbortSignal.timeout(2_000), timeoutMs: 2_000 };
    const at = (u: string) => new URL(u);
    await expect(resolveAllowed(at('https://localhost/'), closed, dns)).rejects.toThrow(/loopback/);
    await expect(resolveAllowed(at('https://a.localhost/'), closed, dns)).rejects.toThrow(
      /loopback/,
    );
    await expect(
      resolveAllowed(at('http://localhost:9/'), { allowLoopback: true, allowedNetworks: [] }, dns),
    ).resolves.toEqual(['127.0.0.1', '::1']);
    await expect(resolveAllowed(at('https://[::1]/'), closed, dns)).rejects.toThrow(/loopback/);
  });

  it('connects to the checked address only', async () => {
    const lookup = pinnedLookup(['203.0.113.7', '2001:4860::8888']);
    const one = await new Promise((resolve) =>
      lookup('evil.example', {}, (_e, address, family) => resolve([address, family])),
    );
    expect(one).toEqual(['203.0.113.7', 4]);
    const all = await new Promise((resolve) =>
      lookup('evil.example', { all: true }, (_e, addresses) => resolve(addresses)),
    );
    expect(all).toEqual([
      { address: '203.0.113.7', family: 4 },
      { address: '2001:4860::8888', family: 6 },
    ]);
  });
});
