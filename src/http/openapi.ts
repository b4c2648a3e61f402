import {
  OpenAPIRegistry,
  OpenApiGeneratorV31,
  type ResponseConfig,
} from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { ERROR_CODES } from '../platform/errors.ts';
import * as s from './schemas.ts';
import * as policy from './policy.schemas.ts';

import { EXPORT_OPERATIONS } from './export.openapi.ts';
import { WEBHOOK_OPERATIONS } from './webhook.openapi.ts';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
export type Op = {
  method: Method;
  path: string;
  /** Stable and unique: the method name a generated client gives the operation. */
  operationId: string;
  summary: string;
  scope?: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  ok: { status: number; schema: z.ZodType; description: string };
  /** Also answers application/x-ndjson and text/csv streams. */
  streams?: boolean;
  /** Takes no key: its path holds its credential (an export link). */
  public?: true;
  /** Answers a file: text/csv or application/x-ndjson, never JSON. */
  files?: true;
  errors?: number[];
};

const ORG = { orgId: s.Uuid };
const KEY = { orgId: s.Uuid, keyId: s.Uuid };

/** Every documented operation, described with the same schemas the handlers parse with. */
const OPERATIONS: Op[] = [
  {
    method: 'post',
    path: '/api/orgs',
    operationId: 'createOrg',
    summary: 'Create an org and its first org:admin key (operator token)',
    body: s.CreateOrgBody,
    ok: { status: 201, schema: s.CreatedOrgJson, description: 'Created' },
    errors: [400, 401, 404],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}',
    operationId: 'getOrg',
    summary: 'Read the org of the calling key',
    params: z.object(ORG),
    ok: { status: 200, schema: s.OrgJson, description: 'The org' },
    errors: [401, 404],
  },
  {
    method: 'post',
    path: '/api/orgs/{orgId}/api-keys',
    operationId: 'createKey',
    summary: 'Create a key; the plaintext is in this response only',
    scope: 'keys:write',
    params: z.object(ORG),
    body: s.CreateKeyBody,
    ok: { status: 201, schema: s.IssuedKeyJson, description: 'Created' },
    errors: [400, 401, 403, 404, 422],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/api-keys',
    operationId: 'listKeys',
    summary: 'List keys, newest first',
    scope: 'keys:read',
    params: z.object(ORG),
    query: s.ListKeysQuery,
    ok: { status: 200, schema: s.KeyListJson, description: 'A page of keys' },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/api-keys/{keyId}',
    operationId: 'getKey',
    summary: 'Read one key',
    scope: 'keys:read',
    params: z.object(KEY),
    ok: { status: 200, schema: s.ApiKeyJson, description: 'The key' },
    errors: [401, 403, 404],
  },
  {
    method: 'patch',
    path: '/api/orgs/{orgId}/api-keys/{keyId}',
    operationId: 'updateKey',
    summary: 'Rename, rescope or change the expiry of a key (environment is immutable)',
    scope: 'keys:write',
    params: z.object(KEY),
    body: s.UpdateKeyBody,
    ok: { status: 200, schema: s.ApiKeyJson, description: 'The updated key' },
    errors: [400, 401, 403, 404, 422],
  },
  {
    method: 'post',
    path: '/api/orgs/{orgId}/api-keys/{keyId}/rotate',
    operationId: 'rotateKey',
    summary: 'Rotate: new key, old key expires after the overlap (0 revokes it now)',
    scope: 'keys:write',
    params: z.object(KEY),
    body: s.RotateKeyBody,
    ok: { status: 201, schema: s.RotatedKeyJson, description: 'The new key and the previous one' },
    errors: [400, 401, 403, 404, 422],
  },
  {
    method: 'delete',
    path: '/api/orgs/{orgId}/api-keys/{keyId}',
    operationId: 'revokeKey',
    summary: 'Revoke a key (idempotent)',
    scope: 'keys:write',
    params: z.object(KEY),
    query: s.RevokeQuery,
    ok: {
      status: 200,
      schema: z.object({ api_key: s.ApiKeyJson }),
      description: 'The revoked key',
    },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/api-keys/usage',
    operationId: 'listKeyUsage',
    summary: 'Usage of every key of the org: last use, counts, dormant and spike flags, summary',
    scope: 'usage:read',
    params: z.object(ORG),
    query: s.OrgUsageQuery,
    ok: { status: 200, schema: s.OrgUsageJson, description: 'A page of per-key usage' },
    errors: [400, 401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/findings',
    operationId: 'getOrgFindings',
    summary:
      'What an org admin should look at: revoked keys still tried, old keys still used after a rotation, keys refused by their limits in the last 24 h, spikes',
    scope: 'usage:read',
    params: z.object(ORG),
    ok: { status: 200, schema: s.FindingsJson, description: 'The org’s findings' },
    errors: [401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/usage/daily',
    operationId: 'getOrgUsageTrend',
    summary:
      'The org at a glance: requests, errors and refusals per UTC day (zero-filled, today partial) and its 5 busiest keys',
    scope: 'usage:read',
    params: z.object(ORG),
    query: s.OrgTrendQuery,
    ok: { status: 200, schema: s.OrgTrendJson, description: 'The org’s daily trend' },
    errors: [400, 401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/api-keys/{keyId}/usage',
    operationId: 'getKeyUsage',
    summary:
      'One key’s analytics: window totals, percentiles, series, top endpoints, recent events',
    scope: 'usage:read',
    params: z.object(KEY),
    query: s.KeyUsageQuery,
    ok: { status: 200, schema: s.KeyUsageJson, description: 'The key’s usage' },
    errors: [400, 401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/usage-events',
    operationId: 'listUsageEvents',
    summary:
      'Raw usage events in (occurred_at, event_id) order; Accept: application/x-ndjson or text/csv streams the whole range',
    scope: 'events:read',
    params: z.object(ORG),
    query: s.EventsQuery,
    ok: { status: 200, schema: s.EventsPageJson, description: 'A page of events (JSON)' },
    streams: true,
    errors: [400, 401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/audit-events',
    operationId: 'listAuditEvents',
    summary: 'The audit trail of key changes, newest first',
    scope: 'audit:read',
    params: z.object(ORG),
    query: s.AuditQuery,
    ok: { status: 200, schema: s.AuditPageJson, description: 'A page of audit events' },
    errors: [400, 401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/policies/dormant-keys',
    operationId: 'getDormantKeyPolicy',
    summary: 'The org’s dormant-key policy (the defaults, off, until one is set)',
    scope: 'keys:read',
    params: z.object(ORG),
    ok: { status: 200, schema: policy.DormantPolicyJson, description: 'The policy' },
    errors: [401, 403, 404],
  },
  {
    method: 'put',
    path: '/api/orgs/{orgId}/policies/dormant-keys',
    operationId: 'setDormantKeyPolicy',
    summary:
      'Set the dormant-key policy (audited); a revoking policy revokes only keys the caller could revoke',
    scope: 'keys:write',
    params: z.object(ORG),
    body: policy.DormantPolicyBody,
    ok: { status: 200, schema: policy.DormantPolicyJson, description: 'The policy as saved' },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/policies/rate-limits',
    operationId: 'getDefaultRateLimits',
    summary: 'The org’s default rate limits, for keys without rate limits of their own',
    scope: 'keys:read',
    params: z.object(ORG),
    ok: { status: 200, schema: s.RateLimitsJson, description: 'The default ([] when none)' },
    errors: [401, 403, 404],
  },
  {
    method: 'put',
    path: '/api/orgs/{orgId}/policies/rate-limits',
    operationId: 'setDefaultRateLimits',
    summary: 'Set the org’s default rate limits (audited); every instance applies them within 1 s',
    scope: 'keys:write',
    params: z.object(ORG),
    body: s.RateLimitsBody,
    ok: { status: 200, schema: s.RateLimitsJson, description: 'The default as saved' },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/policies/dormant-keys/preview',
    operationId: 'previewDormantKeyPolicy',
    summary: 'Exactly the keys the next daily run would act on, if run now',
    scope: 'keys:read',
    params: z.object(ORG),
    ok: { status: 200, schema: policy.DormantPreviewJson, description: 'The preview' },
    errors: [401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/keys/self',
    operationId: 'getCurrentKey',
    summary:
      'The calling key’s own id, org, name, environment, scopes and expiry (no scope needed)',
    ok: { status: 200, schema: s.KeySelfJson, description: 'The calling key' },
    errors: [401, 503],
  },
  {
    method: 'post',
    path: '/api/keys/verify',
    operationId: 'verifyKey',
    summary: 'Verify a key of the caller’s org; the outcome is data, always 200',
    scope: 'keys:verify',
    body: s.VerifyBody,
    ok: { status: 200, schema: s.VerifyResultJson, description: 'The verification outcome' },
    errors: [400, 401, 403],
  },
  {
    method: 'post',
    path: '/api/orgs/{orgId}/usage-events',
    operationId: 'reportUsageEvents',
    summary: 'Report usage events from a gateway or non-Node service (all-or-nothing)',
    scope: 'events:write',
    params: z.object(ORG),
    body: s.ReportEventsBody,
    ok: { status: 202, schema: s.ReportedJson, description: 'Accepted: queued for ingest' },
    errors: [400, 401, 403, 404, 422, 503],
  },
  {
    method: 'get',
    path: '/healthz',
    operationId: 'getLiveness',
    summary: 'Liveness',
    ok: { status: 200, schema: s.HealthJson, description: 'Alive' },
    // As for any path: the HTTP parser's answer to a request line or headers over 16 KB.
    errors: [431],
  },
  {
    method: 'get',
    path: '/readyz',
    operationId: 'getReadiness',
    summary: 'Readiness: database, migrations and queue',
    ok: { status: 200, schema: s.HealthJson, description: 'Ready' },
    errors: [431, 503],
  },
];

// The first code of a status names its response (400: validation_failed, not malformed_request).
const STATUS_TEXT: Record<number, string> = Object.fromEntries(
  Object.values(ERROR_CODES)
    .toReversed()
    .map((e) => [e.status, e.title]),
);

/**
 * An operation's declared errors and those every operation of its kind can answer: a body can
 * be too large (413) or not JSON (415); an /api operation touches Postgres (503: unreachable, no
 * pooled connection in 5 s, a statement past its deadline) and, when a key authenticates it,
 * the per-address limit on uncached keys (429).
 */
function errorsOf(op: Op): number[] {
  const all = new Set(op.errors ?? []);
  if (op.body) for (const status of [413, 415]) all.add(status);
  if (op.path.startsWith('/api/')) {
    all.add(503);
    // Every keyed route: the per-address limit on uncached keys and the key's own rate limits
    // (429), the key's allowed IPs (403).
    if (op.operationId !== 'createOrg') {
      all.add(429);
      all.add(403);
    }
  }
  return [...all].sort((a, b) => a - b);
}

/** The IETF rate-limit fields (draft -11) a key with rate limits gets on its responses. */
const RATE_FIELDS = {
  'RateLimit-Policy': z.string().meta({
    description:
      'The key’s rate limits, for a key that has some: `"burst";q=100;w=1, …` (draft-ietf-httpapi-ratelimit-headers-11).',
  }),
  RateLimit: z.string().meta({
    description:
      'What is left of each window (`r`) and the seconds until it ends (`t`): `"burst";r=42;t=1, …`.',
  }),
};
const RETRY_AFTER = {
  'Retry-After': z.number().int().meta({
    description: 'Seconds until a retry can succeed (absent for a quota that never refills).',
  }),
};
const OK_HEADERS = z.object(RATE_FIELDS).partial();
const TOO_MANY_HEADERS = z.object({ ...RATE_FIELDS, ...RETRY_AFTER }).partial();
const UNAVAILABLE_HEADERS = z.object(RETRY_AFTER).partial();

function register(registry: OpenAPIRegistry, op: Op): void {
  const problem = { 'application/problem+json': { schema: s.ProblemJson } };
  const keyed = op.path.startsWith('/api/') && op.operationId !== 'createOrg' && !op.public;
  const responses: Record<string, ResponseConfig> = {
    [op.ok.status]: {
      description: op.ok.description,
      ...(keyed && { headers: OK_HEADERS }),
      content: {
        ...(!op.files && { 'application/json': { schema: op.ok.schema } }),
        ...((op.streams || op.files) && {
          'application/x-ndjson': { schema: s.UsageEventJson },
          'text/csv': { schema: z.string() },
        }),
      },
    },
  };
  for (const status of errorsOf(op)) {
    responses[status] = {
      description: STATUS_TEXT[status] ?? 'Error',
      content: problem,
      ...(status === 429 && { headers: TOO_MANY_HEADERS }),
      ...(status === 503 && { headers: UNAVAILABLE_HEADERS }),
    };
  }
  registry.registerPath({
    method: op.method,
    path: op.path,
    operationId: op.operationId,
    summary: op.summary,
    ...(op.scope && { description: `Requires scope \`${op.scope}\` (or \`org:admin\`).` }),
    // Machine-readable too: tests (and clients) generate the scope matrix from it.
    'x-required-scopes': op.scope ? [op.scope] : [],
    security: op.path === '/healthz' || op.path === '/readyz' || op.public ? [] : [{ bearer: [] }],
    request: {
      ...(op.params && { params: op.params }),
      ...(op.query && { query: op.query }),
      ...(op.body && {
        body: { required: true, content: { 'application/json': { schema: op.body } } },
      }),
    },
    responses,
  });
}

export function openApiDocument(): object {
  const registry = new OpenAPIRegistry();
  registry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key (`sk_live_…`/`sk_test_…`); `X-API-Key: <key>` works too.',
  });
  for (const op of [...OPERATIONS, ...EXPORT_OPERATIONS, ...WEBHOOK_OPERATIONS]) {
    register(registry, op);
  }
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'keytrail',
      version: '0.1.0',
      description:
        'API keys with an event-sourced usage log on PostgreSQL. Any request the HTTP parser refuses (request line or headers too large, a malformed request, headers not received in time) is answered 431, 400 or 408 with a problem+json body, whatever its path.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    // Relative: the document is served by the API it describes, wherever that is mounted.
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
  });
}
