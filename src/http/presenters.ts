import type { EventRow } from '../usage/events.queries.ts';
import type { z } from 'zod';
import type { ApiKey } from '../keys/keys.types.ts';
import { policiesToJson } from '../limits/key-limits.ts';
import type { IssuedKey } from '../keys/keys.service.ts';
import type { Org } from '../orgs/orgs.types.ts';
import type { ApiKeyJson, OrgJson } from './schemas.ts';

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

export function apiKeyJson(k: ApiKey): z.infer<typeof ApiKeyJson> {
  return {
    id: k.id,
    org_id: k.orgId,
    name: k.name,
    environment: k.environment,
    prefix: k.prefix,
    scopes: k.scopes,
    status: k.status,
    created_at: k.createdAt.toISOString(),
    expires_at: iso(k.expiresAt),
    revoked_at: iso(k.revokedAt),
    rotated_from_id: k.rotatedFromId,
    last_used_at: iso(k.lastUsedAt),
    last_used_ip: k.lastUsedIp,
    request_count: k.requestCount,
    allowed_ips: k.allowedIps,
    rate_limits: policiesToJson(k.rateLimits),
    quota: k.quota,
  };
}

export function orgJson(o: Org): z.infer<typeof OrgJson> {
  return { id: o.id, name: o.name, created_at: o.createdAt.toISOString() };
}

/** `POST /api/orgs` and `keytrail org create --json`: the one place this shape is built. */
export function orgCreatedJson(created: { org: Org; adminKey: IssuedKey }) {
  return {
    org: orgJson(created.org),
    admin_key: { key: created.adminKey.plaintext, api_key: apiKeyJson(created.adminKey.apiKey) },
  };
}

export type EventLike = EventRow;

export function eventJson(e: EventLike) {
  return {
    event_id: e.event_id,
    key_id: e.key_id,
    occurred_at: e.occurred_at.toISOString(),
    method: e.method,
    route: e.route,
    status: e.status,
    latency_ms: e.latency_ms,
    ip: e.ip,
    user_agent: e.user_agent,
    outcome: e.outcome,
  };
}
