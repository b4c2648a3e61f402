/**
 * Name resolution for outgoing webhooks over DNS itself (c-ares: sockets on the event loop),
 * never `dns.lookup`: getaddrinfo runs on libuv's 4-thread pool, and a name whose nameserver
 * never answers would hold a thread past any deadline; four such names would stall every
 * lookup, deflate, file read and new Postgres connection of the process. /etc/hosts is not read
 * (c-ares queries only the nameservers): names that must resolve locally belong in DNS.
 */
import { Resolver } from 'node:dns/promises';

export type DnsOptions = {
  /** Nameservers (`ip` or `ip:port`); the system's (/etc/resolv.conf) when absent. */
  servers?: readonly string[] | undefined;
  /** The lookup's deadline: outstanding queries are cancelled when it fires. */
  signal: AbortSignal;
  timeoutMs: number;
};

export class DnsError extends Error {
  override name = 'DnsError';
  readonly code: string;
  constructor(code: string, host: string) {
    super(`DNS ${code} for ${host}`);
    this.code = code;
  }
}

/** Codes that mean "no such record", not "DNS failed": the other family may still answer. */
const NO_RECORD = new Set(['ENODATA', 'ENOTFOUND']);

/**
 * How long the other family may still take once one has answered with addresses. A nameserver
 * (or middlebox) that drops AAAA queries would otherwise hold every lookup until c-ares gives
 * up, most of the deadline; the answer in hand is enough to go on with.
 */
export const OTHER_FAMILY_GRACE_MS = 300;

/** A and AAAA, settled; the second cancelled shortly after the first answers with addresses. */
async function bothFamilies(resolver: Resolver, host: string) {
  const queries = [resolver.resolve4(host), resolver.resolve6(host)];
  let grace: NodeJS.Timeout | undefined;
  const answered = (addresses: string[]) => {
    if (addresses.length > 0 && !grace) {
      grace = setTimeout(() => resolver.cancel(), OTHER_FAMILY_GRACE_MS);
    }
  };
  for (const query of queries) query.then(answered, () => undefined);
  try {
    return await Promise.allSettled(queries);
  } finally {
    clearTimeout(grace);
  }
}

/** Every A and AAAA address of `host`; a DnsError when there is none or DNS fails. */
export async function resolveName(host: string, o: DnsOptions): Promise<string[]> {
  if (o.signal.aborted) throw new DnsError('ECANCELLED', host);
  // Two tries per server: c-ares then waits ~4.5 × `timeout` in all (measured on Node 24), so
  // it usually gives up by itself before the deadline; the deadline cancels what is left.
  const perTry = Math.max(100, Math.floor(o.timeoutMs / 6));
  const resolver = new Resolver({ timeout: perTry, tries: 2, maxTimeout: 2 * perTry });
  if (o.servers && o.servers.length > 0) resolver.setServers(o.servers);
  const cancel = () => resolver.cancel();
  o.signal.addEventListener('abort', cancel, { once: true });
  try {
    const answers = await bothFamilies(resolver, host);
    const addresses = answers.flatMap((a) => (a.status === 'fulfilled' ? a.value : []));
    if (addresses.length > 0) return addresses;
    const codes = answers.map((a) =>
      a.status === 'rejected' ? String((a.reason as { code?: string }).code ?? 'EUNKNOWN') : '',
    );
    throw new DnsError(codes.find((c) => c && !NO_RECORD.has(c)) ?? 'ENOTFOUND', host);
  } finally {
    o.signal.removeEventListener('abort', cancel);
  }
}
