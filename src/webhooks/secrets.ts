import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Signing secrets: `whsec_` and 32 random bytes in base64, the Standard Webhooks format. They
 * must be kept readable (HMAC needs them), so they are sealed at rest with AES-256-GCM under a
 * key derived from the pepper: a database dump alone does not let anyone forge deliveries.
 */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

export type SecretBox = { seal(secret: string): Buffer; open(sealed: Buffer): string };

export function secretBox(pepper: string): SecretBox {
  const key = Buffer.from(hkdfSync('sha256', pepper, '', 'keytrail webhook secrets v1', 32));
  return {
    seal(secret) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
      return Buffer.concat([iv, cipher.getAuthTag(), body]);
    },
    open(sealed) {
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
      decipher.setAuthTag(sealed.subarray(12, 28));
      return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString(
        'utf8',
      );
    },
  };
}

/**
 * An endpoint URL as the audit trail and logs show it: scheme, host and port only. Paths
 * (`/services/T…/B…/<token>`, Slack-style) and query strings often carry the receiver's own
 * token, and audit:read is a weaker scope than the org:admin the webhooks API needs. Even the
 * first path segment can be a token (some receivers put one there), so none of it is kept.
 */
export function redactedUrl(url: string): string {
  const u = new URL(url);
  const path = u.pathname === '/' ? '/' : '/…';
  return `${u.protocol}//${u.host}${path}${u.search ? '?…' : ''}`;
}

/**
 * A short fingerprint of a full endpoint URL for the audit trail: two URLs the redacted form
 * shows alike (a path-only change) read as different, and equal ones as equal. Keyed (HMAC under
 * a key derived from the pepper): a plain hash of a low-entropy token path could be brute-forced
 * by anyone with audit:read. 32 bits tell destinations apart; they do not identify one.
 */
export function urlFingerprinter(pepper: string): (url: string) => string {
  const key = Buffer.from(
    hkdfSync('sha256', pepper, '', 'keytrail webhook url fingerprint v1', 32),
  );
  return (url) => createHmac('sha256', key).update(url).digest('hex').slice(0, 8);
}
