import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { compileAllowedIps, parseAllowedIps } from './ip-allow.ts';

type Net = { bytes: number[]; bits: number };

const masked = ({ bytes, bits }: Net): Net => ({
  bytes: bytes.map((b, i) => b & (0xff00 >> Math.min(8, Math.max(0, bits - 8 * i)))),
  bits,
});
const isMappedBytes = (bytes: readonly number[]) =>
  bytes.length === 16 &&
  bytes.slice(0, 10).every((b) => b === 0) &&
  bytes[10] === 0xff &&
  bytes[11] === 0xff;

const byteArb = fc.integer({ min: 0, max: 255 });
const v4BytesArb = fc.array(byteArb, { minLength: 4, maxLength: 4 });
/** Mostly 2001:db8::/32 and small numbers so that networks overlap; sometimes anything. */
const v6BytesArb = fc.oneof(
  fc.array(byteArb, { minLength: 16, maxLength: 16 }),
  fc
    .array(fc.constantFrom(0, 1, 0xff), { minLength: 12, maxLength: 12 })
    .map((rest) => [0x20, 0x01, 0x0d, 0xb8, ...rest]),
);
const netArb: fc.Arbitrary<Net> = fc
  .oneof(
    fc.record({ bytes: v4BytesArb, bits: fc.oneof(fc.constantFrom(0, 32), fc.nat({ max: 32 })) }),
    fc.record({ bytes: v6BytesArb, bits: fc.oneof(fc.constantFrom(0, 128), fc.nat({ max: 128 })) }),
  )
  .map(masked)
  .filter((n) => !isMappedBytes(n.bytes));

const textOf = (bytes: readonly number[]) => ipaddr.fromByteArray([...bytes]).toString();
const oracleNet = (n: Net) => [ipaddr.fromByteArray(n.bytes), n.bits] as const;

/** An address inside `net` (host bits random), or anywhere. */
const addressArb = (nets: readonly Net[]): fc.Arbitrary<number[]> =>
  fc.oneof(
    v4BytesArb,
    v6BytesArb,
    v4BytesArb.map((v4) => [...Array<number>(10).fill(0), 0xff, 0xff, ...v4]),
    fc
      .tuple(fc.constantFrom(...nets), fc.array(byteArb, { minLength: 16, maxLength: 16 }))
      .map(([net, noise]) =>
        net.bytes.map(
          (b, i) =>
            b | (noise[i]! & ~(0xff00 >> Math.min(8, Math.max(0, net.bits - 8 * i))) & 0xff),
        ),
      ),
  );

/** The client-address spellings a matcher meets, from one address. */
function spellings(bytes: readonly number[]): string[] {
  const text = textOf(bytes);
  if (bytes.length === 4) return [text, `::ffff:${text}`, `::FFFF:${text}`];
  const forms = [text, ipaddr.fromByteArray([...bytes]).toNormalizedString(), `${text}%eth0`];
  return isMappedBytes(bytes) ? [...forms, `::ffff:${bytes.slice(12).join('.')}`] : forms;
}

describe('parseAllowedIps', () => {
  it('answers the canonical form Postgres cidr prints', () => {
    const entries = [
      '10.0.0.0/8',
      '192.0.2.7',
      ' 2001:DB8:0:0::/32 ',
      '2001:db8::1',
      '::/0',
      '0.0.0.0/0',
      '::1.2.3.0/120',
      '::2',
      '1:0:0:1:0:0:1:0/128',
    ];
    expect(parseAllowedIps(entries)).toEqual({
      ok: true,
      cidrs: [
        '10.0.0.0/8',
        '192.0.2.7/32',
        '2001:db8::/32',
        '2001:db8::1/128',
        '::/0',
        '0.0.0.0/0',
        '::1.2.3.0/120',
        '::0.0.0.2/128',
        '1::1:0:0:1:0/128',
      ],
    });
  });

  it('keeps each network once, in first-seen order', () => {
    expect(parseAllowedIps(['10.0.0.1', '192.0.2.0/24', '10.0.0.1/32', '10.0.0.0/8'])).toEqual({
      ok: true,
      cidrs: ['10.0.0.1/32', '192.0.2.0/24', '10.0.0.0/8'],
    });
  });

  it.each([
    ['10.0.0.1/8', 'host bits set; did you mean 10.0.0.0/8'],
    ['2001:db8::1/32', 'host bits set; did you mean 2001:db8::/32'],
    ['010.0.0.1', 'four decimal octets'],
    ['10.1', 'four decimal octets'],
    ['0x0a.0.0.1', 'four decimal octets'],
    ['64:ff9b::010.0.0.1', 'four decimal octets'],
    ['fe80::1%eth0', 'zone id'],
    ['fe80::/10%eth0', 'zone id'],
    ['::ffff:192.0.2.7', 'list the IPv4 network (192.0.2.7/32)'],
    ['::ffff:c000:200/120', 'list the IPv4 network (192.0.2.0/24)'],
    ['::ffff:0:0/80', 'IPv4-mapped'],
    ['10.0.0.0/33', 'from 0 to 32 for IPv4'],
    ['2001:db8::/129', 'from 0 to 128 for IPv6'],
    ['10.0.0.0/08', 'from 0 to 32'],
    ['10.0.0.0/', 'from 0 to 32'],
    ['10.0.0.0/8/8', 'not an IP address'],
    ['256.0.0.0', 'not an IP address'],
    ['example.com', 'not an IP address'],
    ['', 'not an IP address'],
  ])('refuses %j saying why', (entry, reason) => {
    const result = parseAllowedIps(['192.0.2.0/24', entry]);
    expect(result).toMatchObject({ ok: false, index: 1 });
    expect(result.ok === false && result.reason).toContain(reason);
  });

  it('refuses what is not a string', () => {
    expect(parseAllowedIps([42 as unknown as string])).toMatchObject({ ok: false, index: 0 });
  });

  it('answers a canonical form that parses to itself and names the same network', () => {
    fc.assert(
      fc.property(netArb, fc.boolean(), (net, normalized) => {
        const address = ipaddr.fromByteArray(net.bytes);
        const text =
          normalized && address.kind() === 'ipv6'
            ? (address as ipaddr.IPv6).toNormalizedString()
            : address.toString();
        const result = parseAllowedIps([`${text}/${net.bits}`]);
        if (!result.ok) throw new Error(result.reason);
        const [cidr = ''] = result.cidrs;
        expect(parseAllowedIps([cidr])).toEqual(result);
        const [shown = '', bits] = cidr.split('/');
        expect(Number(bits)).toBe(net.bits);
        if (shown.includes('.') && shown.includes(':')) {
          // Postgres' `::a.b.c.d`: the first 96 bits are zero.
          expect(net.bytes.slice(0, 12).every((b) => b === 0)).toBe(true);
          expect(shown).toBe(`::${net.bytes.slice(12).join('.')}`);
        } else {
          expect(shown).toBe(address.toString());
        }
      }),
    );
  });
});

describe('compileAllowedIps', () => {
  const allows = compileAllowedIps(['10.0.0.0/8', '192.0.2.7/32', '2001:db8::/32', 'fe80::/10']);

  it('matches IPv4, IPv6 and IPv4-mapped client addresses', () => {
    for (const ip of [
      '10.1.2.3',
      '192.0.2.7',
      '2001:db8::1',
      '::ffff:10.1.2.3',
      '::ffff:a01:203',
    ]) {
      expect(allows(ip)).toBe(true);
    }
    for (const ip of ['11.0.0.1', '192.0.2.8', '2001:db9::1', '::ffff:11.0.0.1', '::a01:203']) {
      expect(allows(ip)).toBe(false);
    }
  });

  it('matches an address with a zone id without the zone', () => {
    expect(allows('fe80::1%eth0')).toBe(true);
    expect(allows('fe80::1%')).toBe(true);
    expect(allows('fec0::1%eth0')).toBe(false);
  });

  it('allows nothing for garbage, empty or missing addresses, and never throws', () => {
    for (const ip of [
      '',
      'garbage',
      '010.1.2.3',
      '10.1.2',
      '10.1.2.3.4',
      ' 10.1.2.3',
      '10.1.2.3/8',
      '::ffff:010.1.2.3',
      ':::',
      '%',
      undefined,
      42 as unknown as string,
    ]) {
      expect(allows(ip)).toBe(false);
    }
    const ipLike = fc.string({ unit: fc.constantFrom(...'0123456789abcdef:.%/ ') });
    const wide = compileAllowedIps(['0.0.0.0/0', '::/0']);
    fc.assert(
      fc.property(fc.oneof(fc.string(), ipLike), (ip) => {
        // Whatever it allows is an address (its zone id aside).
        if (wide(ip)) expect(ipaddr.isValid(ip.split('%')[0]!)).toBe(true);
      }),
    );
  });

  it('matches mapped addresses as IPv4 only, and IPv4 never by an IPv6 network', () => {
    const anyV6 = compileAllowedIps(['::/0']);
    expect(anyV6('2001:db8::1')).toBe(true);
    expect(anyV6('10.1.2.3')).toBe(false);
    expect(anyV6('::ffff:10.1.2.3')).toBe(false);
    expect(anyV6('::ffff:a01:203')).toBe(false);
    const anyV4 = compileAllowedIps(['0.0.0.0/0']);
    expect(anyV4('::ffff:a01:203')).toBe(true);
    expect(anyV4('2001:db8::1')).toBe(false);
  });

  it('refuses to compile an entry parseAllowedIps refuses', () => {
    expect(() => compileAllowedIps(['10.0.0.1/8'])).toThrow(/did you mean 10.0.0.0\/8/);
  });

  it('agrees with ipaddr.js on every spelling of random addresses against random networks', () => {
    const caseArb = fc.array(netArb, { minLength: 1, maxLength: 12 }).chain((nets) =>
      fc.record({
        nets: fc.constant(nets),
        addresses: fc.array(addressArb(nets), { maxLength: 8 }),
      }),
    );
    fc.assert(
      fc.property(caseArb, ({ nets, addresses }) => {
        const allows = compileAllowedIps(nets.map((n) => `${textOf(n.bytes)}/${n.bits}`));
        for (const bytes of addresses) {
          const parsed = ipaddr.fromByteArray(bytes);
          const address =
            parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()
              ? (parsed as ipaddr.IPv6).toIPv4Address()
              : parsed;
          const expected = nets
            .map(oracleNet)
            .some(([net, bits]) => net.kind() === address.kind() && address.match(net, bits));
          for (const ip of spellings(bytes)) expect([ip, allows(ip)]).toEqual([ip, expected]);
        }
      }),
      { numRuns: 300 },
    );
  });
});
