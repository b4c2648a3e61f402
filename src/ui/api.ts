/**
 * The admin page's one API client and the only place that calls `fetch`. The key travels in the
 * Authorization header only: never in a URL (it would reach logs, history and Referer), never
 * in a cookie. Response types come from the server's zod schemas (type-only imports, erased
 * from the bundle), so a change of the API's shape fails `tsc -p src/ui`.
 */
import type { z } from 'zod';
import type {
  ApiKeyJson,
  AuditPageJson,
  CreateKeyBody,
  UpdateKeyBody,
  KeyListJson,
  KeySelfJson,
  KeyUsageJson,
  OrgJson,
  FindingsJson,
  OrgTrendJson,
  OrgUsageJson,
  ProblemJson,
} from '../http/schemas.ts';
import type { CreateExportBody, CreatedExportJson, ExportJson } from '../http/export.schemas.ts';
import type {
  CreateWebhookBody,
  CreatedWebhookJson,
  DeliveriesPageJson,
  RotatedSecretJson,
  UpdateWebhookBody,
  WebhookJson,
} from '../http/webhook.schemas.ts';
import type {
  DormantPolicyBody,
  DormantPolicyJson,
  DormantPreviewJson,
} from '../http/policy.schemas.ts';
import { usageSearch, type UsageQuery } from './keys/usage-query.ts';

export type KeySelf = z.output<typeof KeySelfJson>;
export type Org = z.output<typeof OrgJson>;
export type ApiKey = z.output<typeof ApiKeyJson>;
export type OrgUsage = z.output<typeof OrgUsageJson>;
export type OrgTrend = z.output<typeof OrgTrendJson>;
export type OrgFindings = z.output<typeof FindingsJson>;
export type UsageRow = OrgUsage['data'][number];
export type KeyUsage = z.output<typeof KeyUsageJson>;
/** One key's usage window, as GET …/api-keys/:keyId/usage takes it (ISO instants). */
export type KeyUsageQuery = { from: string; to: string; granularity: 'hour' | 'day' };
type KeyList = z.output<typeof KeyListJson>;
export type AuditPage = z.output<typeof AuditPageJson>;
export type AuditEvent = AuditPage['data'][number];
/** An export's range and filters, as POST …/exports takes them (`to` absent: when it starts). */
export type ExportRequest = z.input<typeof CreateExportBody>;
export type Export = z.output<typeof ExportJson>;
export type CreatedExport = z.output<typeof CreatedExportJson>;
export type DormantPolicy = z.output<typeof DormantPolicyJson>;
export type DormantPolicyInput = z.input<typeof DormantPolicyBody>;
export type DormantPreview = z.output<typeof DormantPreviewJson>;
export type RatePolicy = { name: string; limit: number; window_seconds: number };
export type Webhook = z.output<typeof WebhookJson>;
export type NewWebhook = z.output<typeof CreatedWebhookJson>;
export type WebhookInput = z.input<typeof CreateWebhookBody>;
export type WebhookPatch = z.input<typeof UpdateWebhookBody>;
export type Deliveries = z.output<typeof DeliveriesPageJson>;
export type Delivery = Deliveries['data'][number];
export type RotatedSecret = z.output<typeof RotatedSecretJson>;
export type CreateKeyInput = z.input<typeof CreateKeyBody>;
export type UpdateKeyInput = z.input<typeof UpdateKeyBody>;
export type NewKey = { key: string; api_key: ApiKey };
export type RotatedKey = NewKey & { previous: ApiKey };
type Problem = z.output<typeof ProblemJson>;
type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A failed call as the page shows it: the problem+json title and detail, and its code. */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly code: string;
  /** The fields a 400 found invalid, as the API named them. */
  readonly errors: { path: string; message: string }[];

  constructor(
    status: number,
    title: string,
    detail: string,
    code: string,
    errors: { path: string; message: string }[] = [],
  ) {
    super(`${title}: ${detail}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.code = code;
    this.errors = errors;
  }
}

async function problemOf(res: Response): Promise<ApiError> {
  const type = res.headers.get('content-type') ?? '';
  const body = type.includes('json')
    ? ((await res.json().catch(() => null)) as Partial<Problem> | null)
    : null;
  return new ApiError(
    res.status,
    body?.title ?? `HTTP ${res.status}`,
    body?.detail ?? res.statusText,
    body?.code ?? 'http_error',
    Array.isArray(body?.errors) ? body.errors : [],
  );
}

export type Client = {
  self(signal?: AbortSignal): Promise<KeySelf>;
  org(orgId: string, signal?: AbortSignal): Promise<Org>;
  orgUsage(orgId: string, query: UsageQuery, signal?: AbortSignal): Promise<OrgUsage>;
  /** What an org admin should look at. */
  findings(orgId: string, signal?: AbortSignal): Promise<OrgFindings>;
  /** The org's requests, errors and refusals per day, and its busiest keys. */
  orgTrend(orgId: string, days: number, signal?: AbortSignal): Promise<OrgTrend>;
  key(orgId: string, keyId: string, signal?: AbortSignal): Promise<ApiKey>;
  keyUsage(
    orgId: string,
    keyId: string,
    query: KeyUsageQuery,
    signal?: AbortSignal,
  ): Promise<KeyUsage>;
  /** Every key of the org by id (the list read whole). */
  keysById(orgId: string, signal?: AbortSignal): Promise<Map<string, ApiKey>>;
  /** Every key of the org (the whole list, read page by page). */
  keys(orgId: string, signal?: AbortSignal): Promise<ApiKey[]>;
  /** One page of the audit trail, newest first, as the API returns it. */
  auditEvents(orgId: string, cursor: string | null, signal?: AbortSignal): Promise<AuditPage>;
  /** A single-use link that downloads the events of a range (POST …/exports). */
  createExport(orgId: string, body: ExportRequest): Promise<CreatedExport>;
  /** How far an export got (GET …/exports/:exportId). */
  exportStatus(orgId: string, exportId: string, signal?: AbortSignal): Promise<Export>;
  /** 201 `{key, api_key}`: `key` is the plaintext, shown once and never again. */
  createKey(orgId: string, body: CreateKeyInput): Promise<NewKey>;
  rotateKey(orgId: string, keyId: string, overlapSeconds: number): Promise<RotatedKey>;
  revokeKey(orgId: string, keyId: string, reason: string | null): Promise<{ api_key: ApiKey }>;
  /** PATCH …/api-keys/:keyId: the fields given change (its limits, here). */
  updateKey(orgId: string, keyId: string, body: UpdateKeyInput): Promise<ApiKey>;
  dormantPolicy(orgId: string, signal?: AbortSignal): Promise<DormantPolicy>;
  saveDormantPolicy(orgId: string, body: DormantPolicyInput): Promise<DormantPolicy>;
  /** Exactly what the next daily run of the saved policy does. */
  dormantPreview(orgId: string, signal?: AbortSignal): Promise<DormantPreview>;
  /** The org's default rate limits, for keys without their own. */
  rateDefaults(orgId: string, signal?: AbortSignal): Promise<RatePolicy[]>;
  saveRateDefaults(orgId: string, policies: RatePolicy[]): Promise<RatePolicy[]>;
  webhooks(orgId: string, signal?: AbortSignal): Promise<Webhook[]>;
  createWebhook(orgId: string, body: WebhookInput): Promise<NewWebhook>;
  updateWebhook(orgId: string, id: string, patch: WebhookPatch): Promise<Webhook>;
  deleteWebhook(orgId: string, id: string): Promise<void>;
  rotateWebhookSecret(orgId: string, id: string): Promise<RotatedSecret>;
  sendWebhookTest(orgId: string, id: string): Promise<unknown>;
  deliveries(orgId: string, id: string, signal?: AbortSignal): Promise<Deliveries>;
  resendDelivery(orgId: string, id: string, deliveryId: string): Promise<unknown>;
  /** Aborts every request in flight and refuses new ones (sign-out). */
  dispose(): void;
};

// The key list is read whole to join scopes onto the usage rows (which do not carry them):
// 500 per page is the API's maximum; 40 pages bound a runaway loop far above the 1,000-key cap.
const LIST_PAGE = 500;
const MAX_LIST_PAGES = 40;
const AUDIT_PAGE = 50;

/**
 * A client bound to one key. `onUnauthenticated` runs on any 401 (the key was revoked or expired
 * while the page was open), so the page can drop the key and return to sign-in.
 */
export function createClient(key: string, onUnauthenticated: (error: ApiError) => void): Client {
  // Signing out aborts whatever this key still has in flight, and sends nothing more.
  const session = new AbortController();
  async function send(
    method: Method,
    path: string,
    accept: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<Response> {
    const abort = signal ? AbortSignal.any([signal, session.signal]) : session.signal;
    const headers: Record<string, string> = { authorization: `Bearer ${key}`, accept };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
        signal: abort,
      });
    } catch (error) {
      if (abort.aborted) throw error;
      throw new ApiError(0, 'Network error', 'the server could not be reached', 'network');
    }
    if (res.ok) return res;
    const error = await problemOf(res);
    if (res.status === 401 && !session.signal.aborted) onUnauthenticated(error);
    throw error;
  }
  const call = async <T>(
    method: Method,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<T> => (await (await send(method, path, 'application/json', body, signal)).json()) as T;
  const org = (orgId: string) => `/api/orgs/${encodeURIComponent(orgId)}`;
  const get = <T>(path: string, signal?: AbortSignal) => call<T>('GET', path, undefined, signal);
  const hooksPath = (orgId: string) => `${org(orgId)}/webhooks`;
  const keyPath = (orgId: string, keyId: string) =>
    `${org(orgId)}/api-keys/${encodeURIComponent(keyId)}`;

  return {
    dispose: () => session.abort(),
    self: (signal) => get<KeySelf>('/api/keys/self', signal),
    org: (orgId, signal) => get<Org>(org(orgId), signal),
    orgUsage: (orgId, query, signal) =>
      get<OrgUsage>(`${org(orgId)}/api-keys/usage?${usageSearch(query)}`, signal),
    findings: (orgId, signal) => get<OrgFindings>(`${org(orgId)}/findings`, signal),
    orgTrend: (orgId, days, signal) =>
      get<OrgTrend>(`${org(orgId)}/usage/daily?days=${days}`, signal),
    key: (orgId, keyId, signal) => get<ApiKey>(keyPath(orgId, keyId), signal),
    keyUsage: (orgId, keyId, query, signal) =>
      get<KeyUsage>(`${keyPath(orgId, keyId)}/usage?${new URLSearchParams(query)}`, signal),
    createKey: (orgId, body) => call<NewKey>('POST', `${org(orgId)}/api-keys`, body),
    rotateKey: (orgId, keyId, overlapSeconds) =>
      call<RotatedKey>('POST', `${keyPath(orgId, keyId)}/rotate`, {
        overlap_seconds: overlapSeconds,
      }),
    updateKey: (orgId, keyId, body) => call<ApiKey>('PATCH', keyPath(orgId, keyId), body),
    revokeKey: (orgId, keyId, reason) =>
      call<{ api_key: ApiKey }>(
        'DELETE',
        reason
          ? `${keyPath(orgId, keyId)}?${new URLSearchParams({ reason })}`
          : keyPath(orgId, keyId),
      ),
    async keys(orgId, signal) {
      const keys: ApiKey[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        const params = new URLSearchParams({ limit: String(LIST_PAGE) });
        if (cursor) params.set('cursor', cursor);
        const list: KeyList = await get<KeyList>(`${org(orgId)}/api-keys?${params}`, signal);
        keys.push(...list.data);
        cursor = list.next_cursor;
        if (!cursor) break;
      }
      return keys;
    },
    async keysById(orgId, signal) {
      const keys = await this.keys(orgId, signal);
      return new Map(keys.map((k) => [k.id, k]));
    },
    auditEvents(orgId, cursor, signal) {
      const params = new URLSearchParams({ limit: String(AUDIT_PAGE) });
      if (cursor) params.set('cursor', cursor);
      return get<AuditPage>(`${org(orgId)}/audit-events?${params}`, signal);
    },
    dormantPolicy: (orgId, signal) =>
      get<DormantPolicy>(`${org(orgId)}/policies/dormant-keys`, signal),
    saveDormantPolicy: (orgId, body) =>
      call<DormantPolicy>('PUT', `${org(orgId)}/policies/dormant-keys`, body),
    dormantPreview: (orgId, signal) =>
      get<DormantPreview>(`${org(orgId)}/policies/dormant-keys/preview`, signal),
    rateDefaults: async (orgId, signal) =>
      (await get<{ rate_limits: RatePolicy[] }>(`${org(orgId)}/policies/rate-limits`, signal))
        .rate_limits,
    saveRateDefaults: async (orgId, policies) =>
      (
        await call<{ rate_limits: RatePolicy[] }>('PUT', `${org(orgId)}/policies/rate-limits`, {
          rate_limits: policies,
        })
      ).rate_limits,
    webhooks: async (orgId, signal) =>
      (await get<{ data: Webhook[] }>(hooksPath(orgId), signal)).data,
    createWebhook: (orgId, body) => call<NewWebhook>('POST', hooksPath(orgId), body),
    updateWebhook: (orgId, id, patch) =>
      call<Webhook>('PATCH', `${hooksPath(orgId)}/${encodeURIComponent(id)}`, patch),
    deleteWebhook: async (orgId, id) => {
      await send('DELETE', `${hooksPath(orgId)}/${encodeURIComponent(id)}`, 'application/json');
    },
    rotateWebhookSecret: (orgId, id) =>
      call<RotatedSecret>('POST', `${hooksPath(orgId)}/${encodeURIComponent(id)}/rotate-secret`),
    sendWebhookTest: (orgId, id) =>
      call('POST', `${hooksPath(orgId)}/${encodeURIComponent(id)}/test`),
    deliveries: (orgId, id, signal) =>
      get<Deliveries>(`${hooksPath(orgId)}/${encodeURIComponent(id)}/deliveries?limit=20`, signal),
    resendDelivery: (orgId, id, deliveryId) =>
      call(
        'POST',
        `${hooksPath(orgId)}/${encodeURIComponent(id)}/deliveries/${encodeURIComponent(deliveryId)}/resend`,
      ),
    createExport: (orgId, body) => call<CreatedExport>('POST', `${org(orgId)}/exports`, body),
    exportStatus: (orgId, exportId, signal) =>
      get<Export>(`${org(orgId)}/exports/${encodeURIComponent(exportId)}`, signal),
  };
}
