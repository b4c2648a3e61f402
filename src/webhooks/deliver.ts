/**
 * One delivery attempt over HTTP: a POST of the signed message to the checked address, within
 * a deadline, never following a redirect (a 3xx is a failure: a receiver cannot bounce a
 * delivery to an address that was not checked).
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Webhook } from 'standardwebhooks';
import type { WebhookConfig } from '../platform/config.ts';
import { pinnedLookup, resolveAllowed, RefusedAddress } from '../platform/ssrf.ts';
import { AttemptFailure, categorize, type WebhookErrorCategory } from './delivery-errors.ts';

export type AttemptResult = {
  statusCode: number | null;
  latencyMs: number;
  /** Stored and shown to the org admin: a category only, never an address. */
  error: WebhookErrorCategory | null;
  /** Node's own message, for the worker's log (operators) only. */
  detail: string | null;
};

export type Outgoing = {
  url: string;
  messageId: string;
  body: string;
  /** Every secret that currently signs (rotated ones sign beside the new one for a while). */
  secrets: readonly string[];
  at: Date;
};

/** Standard Webhooks headers: the id, the attempt's timestamp, one `v1,` signature per secret. */
export function signedHeaders(o: Outgoing): Record<string, string> {
  const signatures = o.secrets.map((s) => new Webhook(s).sign(o.messageId, o.at, o.body));
  return {
    'content-type': 'application/json',
    'user-agent': 'keytrail-webhooks/1',
    'webhook-id': o.messageId,
    'webhook-timestamp': String(Math.floor(o.at.getTime() / 1000)),
    'webhook-signature': signatures.join(' '),
  };
}

const MAX_RESPONSE_BYTES = 64 * 1024;

export type AttemptOptions = Pick<WebhookConfig, 'addresses' | 'timeoutMs' | 'dnsServers'>;

export async function attempt(o: Outgoing, c: AttemptOptions): Promise<AttemptResult> {
  const started = performance.now();
  const done = (statusCode: number | null, error: Error | null): AttemptResult => ({
    statusCode,
    latencyMs: Math.round(performance.now() - started),
    error: error && categorize(error),
    detail: error && error.message,
  });
  const asError = (e: unknown) =>
    e instanceof Error ? e : new AttemptFailure('other', 'not an Error');
  const url = new URL(o.url);
  // One deadline for all of it, resolving the name too (its queries are cancelled then).
  const signal = AbortSignal.timeout(c.timeoutMs);
  let addresses: string[];
  try {
    const dns = { servers: c.dnsServers, signal, timeoutMs: c.timeoutMs };
    addresses = await resolveAllowed(url, c.addresses, dns);
  } catch (error) {
    if (error instanceof RefusedAddress) {
      return done(null, new AttemptFailure('address_not_allowed', error.message));
    }
    return done(null, new AttemptFailure('dns_failed', asError(error).message));
  }
  try {
    const status = await post(url, addresses, signedHeaders(o), o.body, signal, c.timeoutMs);
    if (status >= 200 && status < 300) return done(status, null);
    const category = status >= 300 && status < 400 ? 'redirect' : 'http_error';
    return done(status, new AttemptFailure(category, `HTTP ${status}`));
  } catch (error) {
    return done(null, asError(error));
  }
}

function post(
  url: URL,
  addresses: readonly string[],
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<number> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      lookup: pinnedLookup(addresses),
      agent: false,
      signal,
    });
    req.once('error', (error) =>
      reject(
        error.name === 'AbortError'
          ? new AttemptFailure('timeout', `timed out after ${timeoutMs} ms`)
          : error,
      ),
    );
    req.once('response', (res) => {
      // Read (and drop) a bounded response body, so the status counts only once it is whole.
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_RESPONSE_BYTES) res.destroy();
      });
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('close', () => resolve(res.statusCode ?? 0));
      res.once('error', () => resolve(res.statusCode ?? 0));
    });
    req.end(body);
  });
}
