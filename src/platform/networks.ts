/**
 * KEYTRAIL_WEBHOOK_ALLOWED_NETWORKS: comma-separated entries, each a CIDR and the ports it
 * admits. `10.20.0.0/16:443+8443`, `10.20.0.0/16:8000-8099`, `[fd00::/8]:443` (IPv6 in
 * brackets when it names ports), `10.20.0.0/16:*` (every port: any org admin can then probe
 * every service of that network). An entry without ports admits 443 only (docs/adr/0010).
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

/** One entry; throws saying what is wrong with it. */
export function parseNetwork(entry: string): AllowedNetwork {
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(entry);
  const v4 = /^([^:[\]]+):(.*)$/.exec(entry);
  const [cidr, ports] = bracketed
    ? [bracketed[1] ?? '', bracketed[2]]
    : ipaddr.isValidCIDR(entry)
      ? [entry, undefined]
      : v4
        ? [v4[1] ?? '', v4[2]]
        : [entry, undefined];
  if (!ipaddr.isValidCIDR(cidr)) {
    throw new Error(
      `not a CIDR with optional ports: ${entry} (e.g. 10.0.0.0/8:443+8443 or [fd00::/8]:443)`,
    );
  }
  const [net, bits] = ipaddr.parseCIDR(cidr);
  return { net, bits, ports: ports === undefined ? DEFAULT_PORTS : parsePorts(ports, entry) };
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
