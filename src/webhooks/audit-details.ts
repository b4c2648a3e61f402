/**
 * Webhook audit details as the audit trail shows them: URLs as scheme, host and port, errors as
 * their category. Migration 0010 rewrote the stored rows once; a process of an older version
 * still running during an upgrade may write raw ones after it, so they are cleaned when read.
 */
import { storedCategory } from './delivery-errors.ts';
import { redactedUrl } from './secrets.ts';

function safeUrl(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return redactedUrl(value);
  } catch {
    return '(redacted)';
  }
}

/** `{from, to, …}` of a URL change, or a URL: shown without path or query. */
function shownUrl(value: unknown): unknown {
  if (typeof value === 'string') return safeUrl(value);
  if (typeof value !== 'object' || value === null) return value;
  const change = { ...(value as Record<string, unknown>) };
  change.from = safeUrl(change.from);
  change.to = safeUrl(change.to);
  return change;
}

export function shownWebhookDetails(action: string, details: unknown): unknown {
  if (!action.startsWith('webhook.') || typeof details !== 'object' || details === null) {
    return details;
  }
  const shown: Record<string, unknown> = { ...(details as Record<string, unknown>) };
  if ('url' in shown) shown.url = shownUrl(shown.url);
  const changes = shown.changes;
  if (typeof changes === 'object' && changes !== null && 'url' in changes) {
    shown.changes = { ...changes, url: shownUrl(changes.url) };
  }
  if (typeof shown.last_error === 'string') shown.last_error = storedCategory(shown.last_error);
  return shown;
}
