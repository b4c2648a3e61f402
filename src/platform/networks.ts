/**
 * KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS: comma-separated entries, each a CIDR and the ports it
 * admits. `10.20.0.0/16:443+8443`, `10.20.0.0/16:8000-8099`, `[fd00::/8]:443` (IPv6 in
 * brackets when it names ports), `10.20.0.0/16:*` (every port: any org admin can then probe
 * every service of that network). An entry without ports admits 443 only (docs/adr/0010).
 * Refused: IPv4 other than four decimal octets (`010.…` is octal to most parsers), IPv4-mapped
 * IPv6 (never matches), prefixes shorter than /8, anything covering loopback or 0.0.0.0, and
 * link-local (169.254.0.0/16, fe80::/10: cloud metadata) unless listed as an entry of its own.
 */
import ipaddr from 'ipaddr.js';

export type AllowedNetwork = {
  net: ipaddr.IPv4 | ipaddr.IPv6;
  bits: number;
  /** Inclusive port ranges, or 'any'. */
  ports: readonly (readonly [number, number])[] | 'any';
};

const DEFAULT_PORTS = [[443, 443]] as const;

function parsePorts(raw: string, entry: string): AllowedNetwork['ports'] {
  if (raw === '*') return 'any';
  return raw.split('+').map((part) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
    const lo = Number(m?.[1]);
    const hi = Number(m?.[2] ?? m?.[1]);
    if (!m || lo < 1 || hi > 65535 || lo > hi) {
      throw new Error(`bad port "${part}" in ${entry} (ports 1-65535, a-b ranges, joined by +)`);
    }
    return [lo, hi] as const;
  });
}

/** Four decimal octets without leading zeros: `010.…` (octal), `0xa.…`, `10.0.0` are refused. */
const DOTTED_QUAD = /^(?:(?:0|[1-9]\d{0,2})\.){3}(?:0|[1-9]\d{0,2})\/(?:0|[1-9]\d?)$/;

function canonical(cidr: string): boolean {
  if (cidr.includes('%')) return false; // an IPv6 zone names an interface, not a network
  return cidr.includes(':') ? /\/(?:0|[1-9]\d{0,2})$/.test(cidr) : DOTTED_QUAD.test(cidr);
}

/** The widest entry: an IPv4 /8 (10.0.0.0/8); for IPv6, unique-local fc00::/7 as a whole. */
const MIN_PREFIX = { ipv4: 8, ipv6: 7 } as const;
/** "This host" and loopback: reachable only through KEYTRAIL_WEBHOOK_ALLOW_LOOPBACK. */
const LOCAL = ['127.0.0.0/8', '0.0.0.0/8', '::1/128', '::/128'].map((c) => ipaddr.parseCIDR(c));
/** Link-local (cloud metadata at 169.254.169.254): only in an entry of its own. */
const LINK_LOCAL = ['169.254.0.0/16', 'fe80::/10'].map((c) => ipaddr.parseCIDR(c));

const overlaps = (n: AllowedNetwork, [other, bits]: [ipaddr.IPv4 | ipaddr.IPv6, number]) =>
  n.net.kind() === other.kind() && n.net.match(other, Math.min(n.bits, bits));

/** Why a well-formed network may not be allowed, or null. */
function networkRefusal(n: AllowedNetwork): string | null {
  if (n.net.kind() === 'ipv6' && (n.net as ipaddr.IPv6).isIPv4MappedAddress()) {
    return 'is IPv4-mapped (::ffff:…): it can never match, delivery checks such addresses as IPv4; list the IPv4 network';
  }
  const min = MIN_PREFIX[n.net.kind()];
  if (n.bits < min) return `is too broad (at least /${min})`;
  if (LOCAL.some((l) => overlaps(n, l))) {
    return 'covers loopback or 0.0.0.0 (that is KEYTRAIL_WEBHOOK_ALLOW_LOOPBACK, not an allowed network)';
  }
  const linkLocal = LINK_LOCAL.find((l) => overlaps(n, l));
  if (linkLocal && n.bits < linkLocal[1]) {
    return `covers link-local ${linkLocal.join('/')} among other addresses (cloud metadata answers there): list it as an entry of its own`;
  }
  return null;
}

/** One entry; throws saying what is wrong with it. */
function parseNetwork(entry: string): AllowedNetwork {
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(entry);
  const v4 = /^([^:[\]]+):(.*)$/.exec(entry);
  const [cidr, ports] = bracketed
    ? [bracketed[1] ?? '', bracketed[2]]
    : ipaddr.isValidCIDR(entry)
      ? [entry, undefined]
      : v4
        ? [v4[1] ?? '', v4[2]]
        : [entry, undefined];
  if (!canonical(cidr) || !ipaddr.isValidCIDR(cidr)) {
    throw new Error(
      `not a CIDR with optional ports: ${entry} (IPv4 as four decimal octets; e.g. 10.0.0.0/8:443+8443 or [fd00::/8]:443)`,
    );
  }
  const [net, bits] = ipaddr.parseCIDR(cidr);
  const network = {
    net,
    bits,
    ports: ports === undefined ? DEFAULT_PORTS : parsePorts(ports, entry),
  };
  const why = networkRefusal(network);
  if (why) throw new Error(`${entry} ${why}`);
  return network;
}

/** Parses the setting (configuration); throws with the first entry that is malformed. */
export function parseNetworks(raw: string): string[] {
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const entry of list) parseNetwork(entry);
  return list;
}

const compiled = new Map<string, AllowedNetwork>();

/** The entries, parsed once each (they come from the configuration: a handful). */
export function compileNetworks(entries: readonly string[]): AllowedNetwork[] {
  return entries.map((entry) => {
    let n = compiled.get(entry);
    if (!n) compiled.set(entry, (n = parseNetwork(entry)));
    return n;
  });
}

export const portAllowed = (n: AllowedNetwork, port: number): boolean =>
  n.ports === 'any' || n.ports.some(([lo, hi]) => port >= lo && port <= hi);
