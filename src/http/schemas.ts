/**
 * The zod schemas of the HTTP API: they validate requests and generate /openapi.json, so the
 * document cannot drift from what the server accepts.
 */
import { z } from 'zod';
import { ENVIRONMENTS } from '../keys/key-format.ts';
import { KEY_STATUSES, SCOPE_RE, VERIFY_CODES } from '../keys/keys.types.ts';
import { OUTCOMES } from '../usage/usage.types.ts';
import { AUDIT_ACTIONS } from '../audit/audit.types.ts';
import { ORG_USAGE_SORTS } from '../usage/analytics.queries.ts';
import { BoundedTime, FilterText, SafeText } from './safe-input.ts';
import { parseAllowedIps } from '../limits/ip-allow.ts';
import {
  COST_MAX,
  MAX_ALLOWED_IPS,
  MAX_RATE_POLICIES,
  QUOTA_MAX,
  POLICY_NAME_RE,
  RATE_LIMIT_MAX,
  WINDOW_SECONDS_MAX,
} from '../limits/limits.types.ts';

const MAX_OVERLAP_SECONDS = 30 * 24 * 3600;

export const Uuid = z.uuid();
export const Scope = z.string().regex(SCOPE_RE, 'must match ^[a-z][a-z0-9_.:-]{0,63}$');
export const Scopes = z.array(Scope).max(100);
const Name = SafeText(200);
export const Timestamp = z.iso.datetime({ offset: true });
const FutureTime = BoundedTime.transform((s) => new Date(s));

/** A key's allowed client addresses, canonical (`10.0.0.1` → `10.0.0.1/32`) once parsed. */
const AllowedIps = z
  .array(z.string().max(64))
  .max(MAX_ALLOWED_IPS)
  .transform((entries, ctx) => {
    const parsed = parseAllowedIps(entries);
    if (parsed.ok) return parsed.cidrs;
    ctx.addIssue({ code: 'custom', path: [parsed.index], message: parsed.reason });
    return z.NEVER;
  })
  .meta({
    description:
      'IPv4 or IPv6 networks (CIDR) or addresses the key may be used from, up to 100; [] = any. Matched against the client address as KEYTRAIL_TRUST_PROXY defines it; IPv4-mapped IPv6 clients match IPv4 entries.',
    example: ['203.0.113.0/24', '2001:db8::/32'],
  });

export const RatePolicyJson = z
  .strictObject({
    name: z.string().regex(POLICY_NAME_RE, 'must match ^[a-z][a-z0-9_-]{0,31}$'),
    limit: z.number().int().min(1).max(RATE_LIMIT_MAX),
    window_seconds: z.number().int().min(1).max(WINDOW_SECONDS_MAX),
  })
  .meta({ id: 'RatePolicy' });

/** Up to 3 policies, named apart; [] = none of the key's own (the org default applies, if any). */
export const RateLimits = z
  .array(RatePolicyJson)
  .max(MAX_RATE_POLICIES)
  .superRefine((policies, ctx) => {
    policies.forEach((p, i) => {
      if (policies.findIndex((q) => q.name === p.name) < i) {
        ctx.addIssue({ code: 'custom', path: [i, 'name'], message: 'policy names must differ' });
      }
    });
  })
  .transform((policies) =>
    policies.map((p) => ({ name: p.name, limit: p.limit, windowSeconds: p.window_seconds })),
  )
  .meta({
    description:
      'At most `limit` requests per fixed window of `window_seconds` (aligned to the epoch, UTC), per policy; every policy must admit a request. [] = none of the key’s own: the org default applies, if any.',
    example: [
      { name: 'burst', limit: 100, window_seconds: 1 },
      { name: 'daily', limit: 100000, window_seconds: 86400 },
    ],
  });

const QuotaRefill = z
  .strictObject({
    interval: z.enum(['day', 'month']),
    amount: z.number().int().min(1).max(QUOTA_MAX),
  })
  .meta({
    description:
      'Resets `remaining` to `amount` at the start of each UTC day or month; null: never.',
  });

const QuotaCreate = z
  .strictObject({
    limit: z.number().int().min(1).max(QUOTA_MAX),
    refill: QuotaRefill.nullable().optional(),
  })
  .refine((q) => !q.refill || q.refill.amount <= q.limit, {
    message: 'must not exceed the quota limit',
    path: ['refill', 'amount'],
  })
  .transform((q) => ({ limit: q.limit, refill: q.refill ?? null }))
  .meta({
    description:
      'A budget of requests, shared with the keys of the key’s rotation; `remaining` starts at `limit`. Each accepted request costs 1 (verify’s `cost`).',
  });

const QuotaUpdate = z
  .strictObject({
    limit: z.number().int().min(1).max(QUOTA_MAX).optional(),
    refill: QuotaRefill.nullable().optional(),
    remaining: z.number().int().min(0).max(QUOTA_MAX).optional(),
  })
  .refine((q) => Object.keys(q).length > 0, { message: 'give limit, refill or remaining' })
  .meta({
    description:
      'Changes the quota (limit, refill) or sets what remains from now on; null removes it.',
  });

export const QuotaJson = z
  .object({
    limit: z.number().int(),
    remaining: z.number().int().meta({
      description:
        'What no instance holds: it lags what instances took in chunks, never shows more than is left.',
    }),
    refill: z.object({ interval: z.enum(['day', 'month']), amount: z.number().int() }).nullable(),
  })
  .meta({ id: 'Quota' });

export const RateLimitsBody = z
  .strictObject({ rate_limits: RateLimits })
  .meta({ id: 'RateLimitsRequest' });

export const RateLimitsJson = z
  .object({ rate_limits: z.array(RatePolicyJson) })
  .meta({ id: 'RateLimitsDefault' });

export const Limit = z.coerce.number().int().min(1).max(500).default(50);

export const OrgIdParams = z.object({ orgId: z.string() });
export const KeyParams = z.object({ orgId: z.string(), keyId: z.string() });

export const CreateOrgBody = z.strictObject({ name: Name }).meta({ id: 'CreateOrgRequest' });

export const CreateKeyBody = z
  .strictObject({
    name: Name,
    environment: z.enum(ENVIRONMENTS).optional(),
    scopes: Scopes.optional(),
    expires_at: FutureTime.nullable().optional(),
    allowed_ips: AllowedIps.optional(),
    rate_limits: RateLimits.optional(),
    quota: QuotaCreate.nullable().optional(),
  })
  .meta({ id: 'CreateApiKeyRequest' });

export const UpdateKeyBody = z
  .strictObject({
    name: Name.optional(),
    scopes: Scopes.optional(),
    expires_at: FutureTime.nullable().optional(),
    allowed_ips: AllowedIps.optional(),
    rate_limits: RateLimits.optional(),
    quota: QuotaUpdate.nullable().optional(),
  })
  .refine((b) => Object.keys(b).length > 0, {
    message: 'give at least one of name, scopes, expires_at, allowed_ips, rate_limits, quota',
  })
  .meta({ id: 'UpdateApiKeyRequest' });

export const RotateKeyBody = z
  .strictObject({
    overlap_seconds: z.number().int().min(0).max(MAX_OVERLAP_SECONDS).optional(),
  })
  .meta({ id: 'RotateApiKeyRequest' });

export const ListKeysQuery = z.strictObject({
  status: z.enum(KEY_STATUSES).optional(),
  limit: Limit,
  cursor: z.string().max(500).optional(),
});

export const RevokeQuery = z.strictObject({ reason: SafeText(500).optional() });

/** A client address as given (IPv4, or IPv6 without a zone id). */
const ClientIp = z.union([z.ipv4().meta({ format: 'ipv4' }), z.ipv6().meta({ format: 'ipv6' })]);

export const VerifyBody = z
  .strictObject({
    key: z.string().max(500),
    scopes: Scopes.optional(),
    cost: z.number().int().min(0).max(COST_MAX).optional().meta({
      description:
        'What this verification charges the key’s quota (default 1; 0 checks without spending). Rate limits count the verification as one request whatever the cost.',
    }),
    ip: ClientIp.optional().meta({
      description:
        "The original caller's address, checked against the key's allowed_ips (a key that has some, verified without ip, answers IP_NOT_ALLOWED) and recorded as the event's ip.",
    }),
  })
  .meta({ id: 'VerifyKeyRequest' });

export const DemoStatusParams = z.object({ code: z.coerce.number().int().min(200).max(599) });

export const ApiKeyJson = z
  .object({
    id: Uuid,
    org_id: Uuid,
    name: z.string(),
    environment: z.enum(ENVIRONMENTS),
    prefix: z.string(),
    scopes: z.array(z.string()),
    status: z.enum(KEY_STATUSES),
    created_at: Timestamp,
    expires_at: Timestamp.nullable(),
    revoked_at: Timestamp.nullable(),
    rotated_from_id: Uuid.nullable(),
    last_used_at: Timestamp.nullable(),
    last_used_ip: z.string().nullable(),
    request_count: z.number().int(),
    allowed_ips: z.array(z.string()).meta({
      description: 'Networks (canonical CIDR) the key may be used from; [] = any.',
    }),
    rate_limits: z.array(RatePolicyJson).meta({
      description: 'The key’s own rate limits; [] = none of its own (the org default applies).',
    }),
    quota: QuotaJson.nullable(),
  })
  .meta({ id: 'ApiKey' });

export const IssuedKeyJson = z
  .object({
    key: z.string().meta({ description: 'The plaintext key. Shown once; store it now.' }),
    api_key: ApiKeyJson,
  })
  .meta({ id: 'IssuedApiKey' });

export const RotatedKeyJson = IssuedKeyJson.extend({ previous: ApiKeyJson }).meta({
  id: 'RotatedApiKey',
});

export const OrgJson = z
  .object({ id: Uuid, name: z.string(), created_at: Timestamp })
  .meta({ id: 'Org' });

export const CreatedOrgJson = z
  .object({ org: OrgJson, admin_key: IssuedKeyJson })
  .meta({ id: 'CreatedOrg' });

export const KeyListJson = z
  .object({ data: z.array(ApiKeyJson), next_cursor: z.string().nullable() })
  .meta({ id: 'ApiKeyList' });

export const VerifyResultJson = z
  .object({
    valid: z.boolean(),
    code: z.enum(VERIFY_CODES),
    key_id: Uuid.optional(),
    org_id: Uuid.optional(),
    environment: z.enum(ENVIRONMENTS).optional(),
    scopes: z.array(z.string()).optional(),
    expires_at: Timestamp.nullable().optional(),
    ratelimits: z
      .array(
        z.object({
          name: z.string(),
          limit: z.number().int(),
          remaining: z.number().int(),
          reset_seconds: z.number().int(),
        }),
      )
      .optional()
      .meta({
        description:
          'The verified key’s rate limits after this check, when it has any and passed the key, address and scope checks: what is left of each window and the seconds until it ends.',
      }),
    quota: z.object({ remaining: z.number().int() }).optional().meta({
      description:
        'The verified key’s quota after this check, when it has one: what this instance sees left (the pool as of its last take plus the credit it holds).',
    }),
  })
  .meta({ id: 'VerifyResult' });

export const KeySelfJson = z
  .object({
    key_id: Uuid,
    org_id: Uuid,
    name: z.string(),
    environment: z.enum(ENVIRONMENTS),
    scopes: z.array(z.string()),
    expires_at: Timestamp.nullable(),
  })
  .meta({ id: 'KeySelf' });

export const ProblemJson = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string(),
    request_id: z.string(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: 'Problem' });

export const HealthJson = z
  .object({
    status: z.enum(['ok', 'unavailable']),
    checks: z.record(z.string(), z.enum(['ok', 'failing'])).optional(),
  })
  .meta({ id: 'Health' });

// Ids are compared as strings after PostgreSQL returns them in lower case: normalise on input.
const LowerUuid = z.uuid().transform((s) => s.toLowerCase());

const ReportedEvent = z
  .strictObject({
    event_id: LowerUuid.optional(),
    key_id: LowerUuid,
    occurred_at: BoundedTime.transform((s) => new Date(s)),
    method: z.string().regex(/^[A-Za-z]{1,16}$/),
    path: z.string().min(1).max(2000).optional(),
    route: z.string().min(1).max(2000).optional(),
    status: z.number().int().min(100).max(599),
    latency_ms: z.number().min(0).max(3_600_000),
    ip: ClientIp.nullable().optional(),
    user_agent: z.string().max(4096).nullable().optional(),
    outcome: z.enum(OUTCOMES).optional(),
  })
  .refine((e) => (e.path === undefined) !== (e.route === undefined), {
    message: 'give exactly one of path or route',
  });

export const ReportEventsBody = z
  .strictObject({ events: z.array(ReportedEvent).min(1).max(1000) })
  .meta({ id: 'ReportUsageEventsRequest' });

export const ReportedJson = z
  .object({
    accepted: z.number().int(),
    reclassified: z
      .number()
      .int()
      .min(1)
      .optional()
      .meta({
        description:
          'Present when some `success` events named a key revoked or expired at or before their ' +
          '`occurred_at`: stored with outcome `revoked` or `expired` (denied attempts), not as use.',
      }),
  })
  .meta({ id: 'ReportUsageEventsResult' });

const Day = 86_400_000;
const OptionalTime = BoundedTime.transform((s) => new Date(s)).optional();

export const OrgUsageQuery = z.strictObject({
  dormant_days: z.coerce.number().int().min(1).max(3650).optional(),
  status: z.enum(KEY_STATUSES).optional(),
  dormant: z.stringbool().optional(),
  sort: z.enum(ORG_USAGE_SORTS).default('last_used_at'),
  order: z.enum(['asc', 'desc']).optional(),
  limit: Limit,
  cursor: z.string().max(1000).optional(),
});

export const OrgTrendQuery = z.strictObject({
  days: z.coerce.number().int().min(1).max(90).default(30),
});

export const OrgTrendJson = z
  .object({
    data_as_of: Timestamp,
    from: Timestamp,
    to: Timestamp,
    series: z.array(
      z.object({
        start: Timestamp,
        requests: z.number().int(),
        errors_4xx: z.number().int(),
        errors_5xx: z.number().int(),
        denied: z.number().int(),
        limited: z.number().int(),
      }),
    ),
    busiest: z.array(
      z.object({
        key_id: Uuid,
        name: z.string(),
        prefix: z.string(),
        revoked: z.boolean(),
        requests: z.number().int(),
      }),
    ),
  })
  .meta({ id: 'OrgUsageTrend' });

export const FindingsJson = z
  .object({
    data_as_of: Timestamp,
    data: z.array(
      z.object({
        kind: z.enum(['revoked_key_used', 'old_key_in_use', 'limited', 'spike']).meta({
          description:
            'revoked_key_used: a revoked or expired key denied since (someone still holds it); old_key_in_use: a key replaced by a rotation, still working and used since; limited: refused by its own limits in the last 24 h; spike: SPEC §5.1’s spike rule.',
        }),
        severity: z.enum(['warning', 'info']),
        key: z.object({ id: Uuid, name: z.string(), prefix: z.string() }),
        at: Timestamp.meta({ description: 'The latest use or attempt it is about.' }),
        count: z.number().int().meta({
          description:
            'Denied attempts (lifetime), requests (lifetime), refusals by a limit (lifetime), or requests in the last 24 h (spike).',
        }),
        replaced_by: Uuid.nullable(),
        daily_mean: z.number().nullable().meta({ description: 'spike: the 7 days’ daily mean.' }),
      }),
    ),
  })
  .meta({ id: 'OrgFindings' });

export const KeyUsageQuery = z.strictObject({
  from: OptionalTime,
  to: OptionalTime,
  granularity: z.enum(['day', 'hour']).default('day'),
});

export const EventsQuery = z.strictObject({
  key_id: z.uuid().optional(),
  from: OptionalTime,
  to: OptionalTime,
  status: z
    .string()
    .regex(/^([1-5]\d\d|[1-5]xx)$/, 'an HTTP status (200) or a class (2xx, 4xx, 5xx)')
    .optional(),
  method: z
    .string()
    .regex(/^[A-Za-z]{1,16}$/)
    .transform((m) => m.toUpperCase())
    .optional(),
  route: FilterText(200).optional(),
  outcome: z.enum(OUTCOMES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(500).optional(),
  format: z.enum(['json', 'ndjson', 'csv']).optional(),
});

export const AuditQuery = z.strictObject({
  key_id: z.uuid().optional(),
  action: z.enum(AUDIT_ACTIONS).optional(),
  limit: Limit,
  cursor: z.string().max(500).optional(),
});

export const DEFAULT_EVENTS_WINDOW_MS = Day;

const NullableTime = Timestamp.nullable();
const Rate = z.number().nullable();

export const OrgUsageJson = z
  .object({
    data_as_of: Timestamp,
    dormant_after_days: z.number().int(),
    summary: z.object({
      total_keys: z.number().int(),
      active_keys: z.number().int(),
      dormant_keys: z.number().int(),
      never_used_keys: z.number().int(),
      total_requests: z.number().int(),
      average_requests_per_key: z.number(),
      most_used: z
        .object({ key_id: Uuid, name: z.string(), request_count: z.number().int() })
        .nullable(),
      least_used: z
        .object({ key_id: Uuid, name: z.string(), request_count: z.number().int() })
        .nullable(),
    }),
    data: z.array(
      z.object({
        key_id: Uuid,
        name: z.string(),
        prefix: z.string(),
        environment: z.enum(ENVIRONMENTS),
        status: z.enum(KEY_STATUSES),
        created_at: Timestamp,
        last_used_at: NullableTime,
        last_used_ip: z.string().nullable(),
        request_count: z.number().int(),
        errors_4xx: z.number().int(),
        errors_5xx: z.number().int(),
        denied_count: z.number().int(),
        last_denied_at: NullableTime,
        limited_count: z.number().int().meta({
          description: 'Requests refused by a limit: rate limits, quota, allowed IPs (SPEC §11).',
        }),
        last_limited_at: NullableTime,
        requests_24h: z.number().int(),
        dormant: z.boolean(),
        spike: z.boolean(),
      }),
    ),
    next_cursor: z.string().nullable(),
  })
  .meta({ id: 'OrgUsage' });

export const UsageEventJson = z
  .object({
    event_id: Uuid,
    key_id: Uuid,
    occurred_at: Timestamp,
    method: z.string(),
    route: z.string(),
    status: z.number().int(),
    latency_ms: z.number(),
    ip: z.string().nullable(),
    user_agent: z.string().nullable(),
    outcome: z.enum(OUTCOMES),
  })
  .meta({ id: 'UsageEvent' });

export const EventsPageJson = z
  .object({ data: z.array(UsageEventJson), next_cursor: z.string().nullable() })
  .meta({ id: 'UsageEventPage' });

const WindowStats = {
  requests: z.number().int(),
  errors_4xx: z.number().int(),
  errors_5xx: z.number().int(),
  denied: z.number().int().meta({
    description: 'Attempts refused for the key itself: revoked, expired, missing scope.',
  }),
  limited: z.number().int().meta({
    description: 'Requests refused by a limit: rate limits, quota, allowed IPs.',
  }),
  avg_latency_ms: Rate,
};

export const KeyUsageJson = z
  .object({
    data_as_of: Timestamp,
    key: ApiKeyJson,
    totals: z.object({
      request_count: z.number().int(),
      errors_4xx: z.number().int(),
      errors_5xx: z.number().int(),
      denied_count: z.number().int(),
      limited_count: z.number().int(),
      first_used_at: NullableTime,
      last_used_at: NullableTime,
      last_used_ip: z.string().nullable(),
      last_denied_at: NullableTime,
      last_limited_at: NullableTime,
    }),
    window: z.object({
      from: Timestamp,
      to: Timestamp,
      ...WindowStats,
      error_rate: Rate,
      p50_latency_ms: Rate,
      p95_latency_ms: Rate,
      p99_latency_ms: Rate,
    }),
    today: z.object({ requests: z.number().int() }),
    this_month: z.object({ requests: z.number().int() }),
    series: z.array(z.object({ start: Timestamp, ...WindowStats, p95_latency_ms: Rate })),
    top_endpoints: z.array(
      z.object({
        method: z.string(),
        route: z.string(),
        requests: z.number().int(),
        errors: z.number().int(),
        avg_latency_ms: Rate,
      }),
    ),
    recent_events: z.array(UsageEventJson),
    rotation: z
      .object({
        previous: z
          .object({
            key_id: Uuid,
            name: z.string(),
            prefix: z.string(),
            status: z.enum(KEY_STATUSES),
            rotated_at: Timestamp,
            expires_at: NullableTime,
            revoked_at: NullableTime,
            requests_since_rotation: z.number().int(),
            last_used_at: NullableTime,
            last_used_ip: z.string().nullable(),
          })
          .nullable()
          .meta({
            description:
              "The key this one replaced (rotated_at is this key's creation) and its use since then: an old key still in use after a rotation.",
          }),
        replaced_by: z
          .object({ key_id: Uuid, name: z.string(), prefix: z.string(), rotated_at: Timestamp })
          .nullable()
          .meta({ description: 'The newest key issued by rotating this one.' }),
      })
      .meta({ description: 'The rotation chain around this key.' }),
  })
  .meta({ id: 'KeyUsage' });

export const AuditEventJson = z
  .object({
    id: Uuid,
    occurred_at: Timestamp,
    action: z.enum(AUDIT_ACTIONS),
    actor: z.object({
      type: z.enum(['key', 'operator', 'system', 'policy']),
      key_id: Uuid.nullable(),
    }),
    target: z.object({ type: z.string(), id: z.string().nullable() }),
    details: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'AuditEvent' });

export const AuditPageJson = z
  .object({ data: z.array(AuditEventJson), next_cursor: z.string().nullable() })
  .meta({ id: 'AuditEventPage' });
