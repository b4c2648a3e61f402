/**
 * Where a webhook may be delivered (SSRF): only public unicast addresses, unless the operator
 * allows loopback (local testing, and then plain http to it too) or lists private networks.
 * Checked when an endpoint is saved (the URL's form, an IP literal's range) and again for every
 * delivery against what the name resolves to then, and the connection goes to the address that
 * was checked: a name that re-resolves elsewhere (DNS rebinding) cannot slip through.
 */
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { resolveName, type DnsOptions } from './dns.ts';
import { compileNetworks, portAllowed } from './networks.ts';

export { parseNetworks } from './networks.ts';

export type AddressPolicy = {
  allowLoopback: boolean;
  /**
   * Networks allowed although private, link-local or reserved (e.g. an internal receiver), each
   * a CIDR with the ports it admits (`10.20.0.0/16:443+8443`, `[fd00::/8]:443`; 443 if none):
   * see networks.ts.
   */
  allowedNetworks: readonly string[];
};

export class RefusedAddress extends Error {
  override name = 'RefusedAddress';
}

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** IPv6 unicast outside 2000::/3 (e.g. IPv4-compatible ::a.b.c.d) is not the public internet. */
const GLOBAL_V6: Cidr = ipaddr.parseCIDR('2000::/3');

/** The range name of an address, for the rules below ('unicast' only when really global). */
function rangeOf(ip: ipaddr.IPv4 | ipaddr.IPv6): string {
  const range = ip.range();
  if (range === 'unicast' && ip.kind() === 'ipv6' && !ip.match(GLOBAL_V6)) return 'reserved';
  return range;
}

/**
 * Why an address may not be reached on `port`, or null when it may. Public and (allowed)
 * loopback addresses take any port; an allowed network only the ports its entry names.
 */
export function refusal(address: string, policy: AddressPolicy, port: number): string | null {
  if (!ipaddr.isValid(address)) return `not an IP address: ${address}`;
  const ip = ipaddr.process(address);
  const range = rangeOf(ip);
  if (range === 'unicast') return null;
  if (range === 'loopback' && policy.allowLoopback) return null;
  const networks = compileNetworks(policy.allowedNetworks).filter(
    ({ net, bits }) => net.kind() === ip.kind() && ip.match(net, bits),
  );
  if (networks.some((n) => portAllowed(n, port))) return null;
  if (networks.length > 0) return `${range} address not allowed on port ${port}`;
  return `${range} address not allowed`;
}

/** The port a URL connects to. */
const portOf = (url: URL): number =>
  url.port ? Number(url.port) : url.protocol === 'http:' ? 80 : 443;

const LOOPBACK_NAMES = new Set(['localhost', 'localhost.']);
const bare = (hostname: string) => hostname.replace(/^\[|\]$/g, '');

/** `localhost` and its subdomains are loopback (RFC 6761), answered without asking DNS. */
const isLocalhost = (host: string) => LOOPBACK_NAMES.has(host) || /\.localhost\.?$/.test(host);

/** Why a URL cannot be an endpoint, or null. Names are resolved at delivery time, not here. */
export function urlRefusal(raw: string, policy: AddressPolicy): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.username || url.password) return 'must not carry credentials';
  if (url.hash) return 'must not have a fragment';
  const host = bare(url.hostname).toLowerCase();
  const literal = isIP(host) !== 0;
  // The same names delivery treats as loopback (resolveAllowed), so saving cannot disagree.
  const loopback = isLocalhost(host) || (literal && rangeOf(ipaddr.process(host)) === 'loopback');
  if (url.protocol === 'http:') {
    if (!(loopback && policy.allowLoopback)) {
      return 'must use https (http only to loopback, with KEYTRAIL_WEBHOOK_ALLOW_LOOPBACK=true)';
    }
  } else if (url.protocol !== 'https:') return 'must use https';
  if (loopback && !policy.allowLoopback) return 'loopback addresses are not allowed';
  return literal ? refusal(host, policy, portOf(url)) : null;
}

/**
 * Resolves the URL's host and checks every address it has on the URL's port (one bad address
 * refuses the name). Returns the addresses to connect to. A literal needs no lookup; a refusal
 * names the range, never the address: an org admin must not learn what internal names resolve
 * to. Throws RefusedAddress, or DnsError (dns.ts) when the name does not resolve in time.
 */
export async function resolveAllowed(
  url: URL,
  policy: AddressPolicy,
  dns: DnsOptions,
): Promise<string[]> {
  const host = bare(url.hostname).toLowerCase();
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else if (isLocalhost(host)) addresses = ['127.0.0.1', '::1'];
  else addresses = await resolveName(host, dns);
  for (const a of addresses) {
    const why = refusal(a, policy, portOf(url));
    if (why) throw new RefusedAddress(why);
  }
  return addresses;
}

/** A `lookup` for http.request that answers with the addresses already checked, and only them. */
export function pinnedLookup(addresses: readonly string[]): LookupFunction {
  const all = addresses.map((address) => ({ address, family: isIP(address) }));
  return (_host, options, callback) => {
    const first = all[0] ?? { address: '', family: 4 };
    if ((options as { all?: boolean }).all) callback(null, all);
    else callback(null, first.address, first.family);
  };
}
