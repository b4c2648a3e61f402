/**
 * Why a delivery attempt failed, as a closed set of categories: the deliveries API and the
 * `webhook.disabled` audit show only these (and the HTTP status), never Node's message, which
 * names the address connected to (`connect ECONNREFUSED 10.20.0.7:8443`) or a certificate's
 * names. The raw message goes to the worker's log only (operators).
 */
import { z } from 'zod';

export const WebhookErrorCategory = z
  .enum([
    'dns_failed',
    'address_not_allowed',
    'connection_refused',
    'connection_reset',
    'network_unreachable',
    'timeout',
    'tls_error',
    'redirect',
    'http_error',
    'other',
  ])
  .meta({
    description:
      'Why the attempt failed (docs/api-keys.md#webhooks); http_error and redirect have the status in status_code.',
  });
export type WebhookErrorCategory = z.infer<typeof WebhookErrorCategory>;

/** A failed step of an attempt: the category, and the raw detail for the operator's log. */
export class AttemptFailure extends Error {
  override name = 'AttemptFailure';
  readonly category: WebhookErrorCategory;
  constructor(category: WebhookErrorCategory, detail: string) {
    super(detail);
    this.category = category;
  }
}

/**
 * Certificate verification (OpenSSL's X509_V_ERR_* as Node names them) and handshake codes.
 * Listed, not guessed from the name: several carry neither TLS nor CERT in it.
 */
const TLS_CODES = [
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'HOSTNAME_MISMATCH',
  'EPROTO',
  'ERR_TLS_CERT_ALTNAME_INVALID',
];

const BY_CODE: Record<string, WebhookErrorCategory> = {
  ...Object.fromEntries(TLS_CODES.map((code) => [code, 'tls_error' as const])),
  ECONNREFUSED: 'connection_refused',
  ECONNRESET: 'connection_reset',
  EPIPE: 'connection_reset',
  ECONNABORTED: 'connection_reset',
  ERR_STREAM_PREMATURE_CLOSE: 'connection_reset',
  EHOSTUNREACH: 'network_unreachable',
  ENETUNREACH: 'network_unreachable',
  EHOSTDOWN: 'network_unreachable',
  EADDRNOTAVAIL: 'network_unreachable',
  ETIMEDOUT: 'timeout',
  ABORT_ERR: 'timeout',
};

/** The category of an error thrown while connecting, sending or reading the answer. */
export function categorize(error: unknown): WebhookErrorCategory {
  if (error instanceof AttemptFailure) return error.category;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    const known = BY_CODE[code];
    if (known) return known;
    // Codes not listed above from the TLS layer (ERR_SSL_…, ERR_TLS_…).
    if (/SSL|TLS|CERT|ALTNAME/.test(code)) return 'tls_error';
  }
  if (typeof message === 'string' && message === 'socket hang up') return 'connection_reset';
  return 'other';
}

/** A stored error as the API shows it: one of the categories, anything else `other`. */
export function storedCategory(stored: string | null): WebhookErrorCategory | null {
  if (stored === null) return null;
  const parsed = WebhookErrorCategory.safeParse(stored);
  return parsed.success ? parsed.data : 'other';
}
