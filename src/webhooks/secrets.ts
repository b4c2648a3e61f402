import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

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
