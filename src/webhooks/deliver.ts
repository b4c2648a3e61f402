/**
 * One delivery attempt over HTTP: a POST of the signed message to the checked address, within
 * a deadline, never following a redirect (a 3xx is a failure: a receiver cannot bounce a
 * delivery to an address that was not checked).
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Webhook } from 'standardwebhooks';
import {
  pinnedLookup,
  resolveAllowed,
  RefusedAddress,
  type AddressPolicy,
} from '../platform/ssrf.ts';

export type AttemptResult = { statusCode: number | null; latencyMs: number; error: string | null };

export type Outgoing = {
  url: string;
  messageId: string;
  body: string;
  /** Every secret that currently signs (a rotated one signs beside the new one for a while). */
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

export async function attempt(
  o: Outgoing,
  policy: AddressPolicy,
  timeoutMs: number,
): Promise<AttemptResult> {
  const started = performance.now();
  const done = (statusCode: number | null, error: string | null): AttemptResult => ({
    statusCode,
    latencyMs: Math.round(performance.now() - started),
    error,
  });
  const url = new URL(o.url);
  // One deadline for all of it: resolving the name too (a slow resolver holds a libuv thread).
  const signal = AbortSignal.timeout(timeoutMs);
  let addresses: string[];
  try {
    addresses = await beforeDeadline(resolveAllowed(url.hostname, policy), signal, timeoutMs);
  } catch (error) {
    const why =
      error instanceof RefusedAddress || error instanceof DeadlineError
        ? error.message
        : `DNS: ${(error as { code?: string }).code ?? String(error)}`;
    return done(null, why);
  }
  try {
    const status = await post(url, addresses, signedHeaders(o), o.body, signal, timeoutMs);
    if (status >= 200 && status < 300) return done(status, null);
    const error =
      status >= 300 && status < 400 ? `redirect not followed (HTTP ${status})` : `HTTP ${status}`;
    return done(status, error);
  } catch (error) {
    return done(null, error instanceof Error ? error.message : String(error));
  }
}

class DeadlineError extends Error {}

/** `work`, or a DeadlineError once `signal` fires. */
function beforeDeadline<T>(work: Promise<T>, signal: AbortSignal, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const late = () => reject(new DeadlineError(`timed out after ${timeoutMs} ms`));
    if (signal.aborted) late();
    signal.addEventListener('abort', late, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', late));
  });
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
      reject(error.name === 'AbortError' ? new Error(`timed out after ${timeoutMs} ms`) : error),
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
