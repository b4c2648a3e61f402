/**
 * Webhook endpoints of an org (SPEC §10): create, change, delete, rotate the secret, list
 * deliveries and re-send one. Every change is audited; a secret is shown once, when made.
 */
import type { Database } from '../platform/db.ts';
import type { Clock } from '../platform/clock.ts';
import type { WebhookConfig } from '../platform/config.ts';
import { AppError } from '../platform/errors.ts';
import { newId } from '../platform/ids.ts';
import { urlRefusal } from '../platform/ssrf.ts';
import { recordAudit, type AuditActor } from '../audit/audit.service.ts';
import type { AuditAction } from '../audit/audit.types.ts';
import { lockOrg } from '../keys/keys.queries.ts';
import type { KeyIdentity } from '../keys/keys.types.ts';
import { storedCategory } from './delivery-errors.ts';
import { generateSecret, redactedUrl, secretBox, urlFingerprinter } from './secrets.ts';
import { pruneAndListPrevious, rotateSecret } from './secrets.queries.ts';
import * as q from './webhooks.queries.ts';
import {
  WEBHOOK_TEST_EVENT,
  type WebhookEndpoint,
  type WebhookEventType,
} from './webhooks.types.ts';

export type EndpointInput = {
  url: string;
  eventTypes: WebhookEventType[];
  description?: string | undefined;
  enabled?: boolean | undefined;
};

/**
 * Rotated secrets signing beside the current one at most: each keeps its full overlap, so a
 * rotation past this many within the overlap is refused rather than cutting one short.
 */
export const MAX_PREVIOUS_SECRETS = 4;

const actorOf = (caller: KeyIdentity): AuditActor => ({ type: 'key', keyId: caller.id });
const notFound = () => new AppError('not_found', { detail: 'webhook endpoint not found' });

export function createWebhooks(deps: {
  db: Database;
  clock: Clock;
  pepper: string;
  config: WebhookConfig;
}) {
  const { db, clock, config } = deps;
  const box = secretBox(deps.pepper);
  const fingerprint = urlFingerprinter(deps.pepper);

  /** The URL as stored (WHATWG-normalised), or a 400 saying why it cannot be an endpoint. */
  function checkedUrl(url: string): string {
    const why = urlRefusal(url, config.addresses);
    if (why) {
      throw new AppError('validation_failed', {
        detail: `url ${why}`,
        errors: [{ path: 'url', message: why }],
      });
    }
    return new URL(url).href;
  }

  async function audited(
    trx: Database,
    caller: KeyIdentity,
    e: { orgId: string; id: string; action: AuditAction; at: Date; details: object },
  ): Promise<void> {
    await recordAudit(trx, {
      orgId: e.orgId,
      at: e.at,
      actor: actorOf(caller),
      action: e.action,
      target: { type: 'webhook', id: e.id },
      details: { ...e.details },
    });
  }

  async function load(trx: Database, orgId: string, id: string): Promise<WebhookEndpoint> {
    const endpoint = await q.findEndpoint(trx, orgId, id, { forUpdate: true });
    if (!endpoint) throw notFound();
    return endpoint;
  }

  return {
    async create(caller: KeyIdentity, orgId: string, input: EndpointInput) {
      const url = checkedUrl(input.url);
      const at = clock.now();
      const secret = generateSecret();
      const id = newId();
      const eventTypes = [...new Set(input.eventTypes)];
      const endpoint = await db.transaction().execute(async (trx) => {
        await lockOrg(trx, orgId);
        if ((await q.countEndpoints(trx, orgId)) >= config.maxPerOrg) {
          throw new AppError('unprocessable', {
            detail: `the org already has ${config.maxPerOrg} webhook endpoints (the limit)`,
          });
        }
        const row = {
          id,
          orgId,
          url,
          description: input.description ?? '',
          eventTypes,
          enabled: input.enabled ?? true,
        };
        await q.insertEndpoint(trx, { ...row, secret: box.seal(secret), at });
        await audited(trx, caller, {
          orgId,
          id,
          action: 'webhook.created',
          at,
          details: {
            url: redactedUrl(row.url),
            url_fingerprint: fingerprint(row.url),
            event_types: eventTypes,
            enabled: row.enabled,
          },
        });
        return load(trx, orgId, id);
      });
      return { endpoint, secret };
    },

    list: (orgId: string) => q.listEndpoints(db, orgId),

    async get(orgId: string, id: string): Promise<WebhookEndpoint> {
      const endpoint = await q.findEndpoint(db, orgId, id);
      if (!endpoint) throw notFound();
      return endpoint;
    },

    async update(caller: KeyIdentity, orgId: string, id: string, patch: q.EndpointPatch) {
      if (patch.url !== undefined) patch = { ...patch, url: checkedUrl(patch.url) };
      if (patch.eventTypes) patch = { ...patch, eventTypes: [...new Set(patch.eventTypes)] };
      const at = clock.now();
      return db.transaction().execute(async (trx) => {
        const before = await load(trx, orgId, id);
        await q.updateEndpoint(trx, orgId, id, patch, at);
        const after = await load(trx, orgId, id);
        await audited(trx, caller, {
          orgId,
          id,
          action: 'webhook.updated',
          at,
          details: { changes: changes(before, after, fingerprint) },
        });
        return after;
      });
    },

    async remove(caller: KeyIdentity, orgId: string, id: string): Promise<void> {
      const at = clock.now();
      await db.transaction().execute(async (trx) => {
        const endpoint = await load(trx, orgId, id);
        await q.deleteEndpoint(trx, orgId, id);
        await audited(trx, caller, {
          orgId,
          id,
          action: 'webhook.deleted',
          at,
          details: { url: redactedUrl(endpoint.url), url_fingerprint: fingerprint(endpoint.url) },
        });
      });
    },

    /**
     * A new secret, shown once; the one it replaces keeps signing beside it for a day, as does
     * every secret rotated away earlier until its own day ends.
     */
    async rotateSecret(caller: KeyIdentity, orgId: string, id: string) {
      const at = clock.now();
      const secret = generateSecret();
      const previousUntil = new Date(at.getTime() + config.previousSecretMs);
      await db.transaction().execute(async (trx) => {
        await load(trx, orgId, id);
        const signing = await pruneAndListPrevious(trx, orgId, id, at);
        const first = signing[0];
        if (first && signing.length >= MAX_PREVIOUS_SECRETS) {
          throw new AppError('unprocessable', {
            detail: `${signing.length} rotated secrets still sign (the limit): rotate again after ${first.toISOString()}`,
          });
        }
        await rotateSecret(trx, orgId, id, { secret: box.seal(secret), previousUntil, at });
        await audited(trx, caller, {
          orgId,
          id,
          action: 'webhook.secret_rotated',
          at,
          details: { previous_secret_expires_at: previousUntil.toISOString() },
        });
      });
      return { secret, previousSecretExpiresAt: previousUntil };
    },

    async deliveries(
      orgId: string,
      id: string,
      p: { limit: number; before?: { createdAt: Date; id: string } | undefined },
    ) {
      await this.get(orgId, id);
      const rows = await q.listDeliveries(db, orgId, id, p);
      const attempts = await q.attemptsOf(
        db,
        orgId,
        rows.map((r) => r.id),
      );
      const byDelivery = new Map<string, ReturnType<typeof logEntry>[]>();
      for (const a of attempts) {
        const entry = logEntry(a);
        const list = byDelivery.get(a.delivery_id);
        if (list) list.push(entry);
        else byDelivery.set(a.delivery_id, [entry]);
      }
      return rows.map((r) => ({ ...r, log: byDelivery.get(r.id) ?? [] }));
    },

    /**
     * A `webhook.test` event to this endpoint alone, through the normal delivery path (signed,
     * retried, logged in its deliveries), one at a time per endpoint. Not audited: it changes
     * nothing, and its delivery log is its trace.
     */
    async sendTest(caller: KeyIdentity, orgId: string, id: string) {
      const at = clock.now();
      return db.transaction().execute(async (trx) => {
        const endpoint = await load(trx, orgId, id);
        if (!endpoint.enabled) {
          throw new AppError('unprocessable', {
            detail: 'the endpoint is disabled: enable it before sending a test event',
          });
        }
        // One at a time: a loop of test events cannot flood the endpoint or the relay.
        if (await q.testInFlight(trx, orgId, id)) {
          throw new AppError('rate_limited', {
            detail: 'a test event is already on its way to this endpoint; see its deliveries',
            retryAfterSeconds: 5,
          });
        }
        const payload = {
          type: WEBHOOK_TEST_EVENT,
          timestamp: at.toISOString(),
          data: {
            org_id: orgId,
            key: null,
            actor: { type: 'key', key_id: caller.id },
            details: { webhook_id: id, message: 'A test event sent from keytrail.' },
          },
        };
        return q.insertTestDelivery(trx, { orgId, endpointId: id, at, payload });
      });
    },

    /** Sends a settled delivery again (same message, same webhook-id); audited. */
    async resend(caller: KeyIdentity, orgId: string, id: string, deliveryId: string) {
      const at = clock.now();
      await db.transaction().execute(async (trx) => {
        const endpoint = await load(trx, orgId, id);
        const status = await q.deliveryStatus(trx, orgId, id, deliveryId);
        if (!status) throw new AppError('not_found', { detail: 'delivery not found' });
        if (!endpoint.enabled) {
          throw new AppError('unprocessable', {
            detail: 'the endpoint is disabled: enable it before re-sending',
          });
        }
        if (!(await q.requeueDelivery(trx, orgId, id, deliveryId))) {
          throw new AppError('unprocessable', {
            detail: `the delivery is ${status}: it is being delivered already`,
          });
        }
        await audited(trx, caller, {
          orgId,
          id,
          action: 'webhook.resent',
          at,
          details: { delivery_id: deliveryId },
        });
      });
    },
  };
}

/** Rows stored before the categories (or by a newer version) read as one of them. */
const logEntry = (a: q.AttemptRow) => ({ ...a, error: storedCategory(a.error) });

/**
 * What an update changed. URLs are compared whole (a path-only change is a change) and shown
 * redacted, with a keyed fingerprint of each side so an auditor can tell destinations apart.
 */
function changes(
  before: WebhookEndpoint,
  after: WebhookEndpoint,
  fingerprint: (url: string) => string,
): Record<string, unknown> {
  const out: Record<string, { from: unknown; to: unknown; [more: string]: unknown }> = {};
  if (before.url !== after.url) {
    out.url = {
      from: redactedUrl(before.url),
      to: redactedUrl(after.url),
      from_fingerprint: fingerprint(before.url),
      to_fingerprint: fingerprint(after.url),
    };
  }
  const pairs: [string, unknown, unknown][] = [
    ['description', before.description, after.description],
    ['event_types', before.eventTypes, after.eventTypes],
    ['enabled', before.enabled, after.enabled],
  ];
  for (const [name, from, to] of pairs) {
    if (JSON.stringify(from) !== JSON.stringify(to)) out[name] = { from, to };
  }
  return out;
}

export type Webhooks = ReturnType<typeof createWebhooks>;
