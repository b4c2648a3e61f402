/**
 * The worker side of webhooks: the relay (queued deliveries → pg-boss jobs, in one
 * transaction) and the delivery handler (one signed attempt per job; a failure is retried by
 * pg-boss with exponential backoff). Delivery is at least once, always with the message's
 * `webhook-id`: a worker killed after the receiver answered but before it committed sends it
 * again, and the receiver drops the repeat by that id.
 */
import { randomUUID } from 'node:crypto';
import { CompiledQuery, type Kysely } from 'kysely';
import type { DB } from '../../db/schema.ts';
import type { Keytrail } from '../keytrail.ts';
import { recordAudit } from '../audit/audit.service.ts';
import { listen, type Listener } from '../platform/notify.ts';
import type { PgBoss } from '../platform/queue.ts';
import type { JobWithMetadata } from 'pg-boss';
import { attempt, type AttemptResult } from './deliver.ts';
import type { WebhookErrorCategory } from './delivery-errors.ts';
import * as q from './delivery.queries.ts';
import { claimQueued, markPending, queuedOrgs } from './outbox.queries.ts';
import { redactedUrl, secretBox } from './secrets.ts';
import {
  WEBHOOK_DEAD_LETTER_QUEUE,
  WEBHOOK_DELIVERY_QUEUE,
  WEBHOOK_OUTBOX_CHANNEL,
} from './webhooks.types.ts';

const RELAY_BATCH = 500;

/** pg-boss's database interface over a Kysely transaction: its jobs commit with ours. */
function executor(trx: Kysely<DB>) {
  return {
    async executeSql(text: string, values: unknown[] = []) {
      const result = await trx.executeQuery(CompiledQuery.raw(text, values));
      return { rows: result.rows };
    },
  };
}

/** The delivery and the job meant to deliver it (a dead-lettered copy has another id). */
/** `org_id` is absent from jobs queued before migration 0014 (see DeliveryRef). */
export type DeliveryJob = { org_id?: string; delivery_id: string; job_id: string };

/** `webhook.disabled` (actor system) for an endpoint failing since `since`. */
function auditDisabled(
  trx: Kysely<DB>,
  w: q.DeliveryWork,
  at: Date,
  since: Date,
  lastError: WebhookErrorCategory,
): Promise<void> {
  return recordAudit(trx, {
    orgId: w.org_id,
    at,
    actor: { type: 'system' },
    action: 'webhook.disabled',
    target: { type: 'webhook', id: w.endpoint_id },
    details: { url: redactedUrl(w.url), failing_since: since.toISOString(), last_error: lastError },
  });
}

export function createWebhookWorker(kt: Keytrail, boss: PgBoss) {
  const { db } = kt.backgroundDatabase;
  const cfg = kt.config.webhooks;
  const box = secretBox(kt.config.keyPepper);

  /** Moves queued deliveries to the queue; returns how many it moved. */
  async function relayOnce(): Promise<number> {
    return db.transaction().execute(async (trx) => {
      const orgs = (await queuedOrgs(RELAY_BATCH).execute(trx)).rows;
      const claimed: { id: string; org_id: string }[] = [];
      for (const { org_id } of orgs) {
        const room = RELAY_BATCH - claimed.length;
        if (room === 0) break;
        claimed.push(...(await claimQueued(org_id, room).execute(trx)).rows);
      }
      if (claimed.length === 0) return 0;
      const pairs = claimed.map(({ id, org_id }) => ({ id, orgId: org_id, jobId: randomUUID() }));
      const jobs = pairs.map(({ id, orgId, jobId }) => ({
        id: jobId,
        data: { org_id: orgId, delivery_id: id, job_id: jobId } satisfies DeliveryJob,
        // Per org: one org's slow or dead endpoints cannot take every delivery slot.
        group: { id: orgId },
        retryLimit: cfg.retry.limit,
        retryDelay: cfg.retry.delaySeconds,
        retryBackoff: true,
        retryDelayMax: cfg.retry.maxDelaySeconds,
      }));
      await boss.insert(WEBHOOK_DELIVERY_QUEUE, jobs, { db: executor(trx) });
      await markPending(pairs).execute(trx);
      return claimed.length;
    });
  }

  let running: Promise<void> | undefined;
  let again = false;
  /** Runs the relay until the outbox is empty; a kick while it runs makes it go once more. */
  function kick(): void {
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        while ((await relayOnce()) === RELAY_BATCH);
      } while (again);
    })()
      .catch((error: unknown) => kt.logger.warn({ err: String(error) }, 'webhook relay failed'))
      .finally(() => (running = undefined));
  }

  /** The current secret and every rotated one whose overlap had not ended when loaded. */
  const secretsOf = (w: q.DeliveryWork): string[] =>
    [w.secret, ...w.previous_secrets].map((s) => box.open(s));

  type Outcome = 'sent' | 'retried' | 'failed';

  /** Records an attempt and what follows from it, in one transaction. */
  function record(w: q.DeliveryWork, result: AttemptResult, at: Date, last: boolean) {
    return db.transaction().execute(async (trx): Promise<Outcome> => {
      const { statusCode, latencyMs, error } = result;
      const ref = { orgId: w.org_id, id: w.id };
      await q.insertAttempt(trx, {
        orgId: w.org_id,
        deliveryId: w.id,
        at,
        statusCode,
        latencyMs,
        error,
      });
      if (result.error === null) {
        await q.setDeliveryStatus(trx, ref, { status: 'succeeded', at, attempted: true });
        await q.markEndpointHealthy(trx, w.org_id, w.endpoint_id);
        return 'sent';
      }
      const failing = await q.markEndpointFailing(trx, w.org_id, w.endpoint_id, at, {
        disableAfterMs: cfg.disableAfterMs,
        spellGapMs: 3 * cfg.retry.maxDelaySeconds * 1000,
      });
      if (failing.disabled) await auditDisabled(trx, w, at, failing.failingSince, result.error);
      const final = last || failing.disabled;
      const status = final ? 'failed' : 'pending';
      await q.setDeliveryStatus(trx, ref, { status, at, attempted: true });
      return final ? 'failed' : 'retried';
    });
  }

  /** One attempt of one delivery. Throws (after recording it) when pg-boss should retry. */
  async function deliver(job: {
    id: string;
    data: DeliveryJob;
    retryCount: number;
    retryLimit: number;
  }): Promise<void> {
    const now = kt.clock.now();
    const w = await q.loadDelivery(db, { orgId: job.data.org_id, id: job.data.delivery_id }, now);
    // Gone (its endpoint deleted), settled already, or handed to a newer job (a re-send).
    if (!w || w.status !== 'pending' || w.job_id !== job.id) return;
    if (!w.enabled) {
      await db
        .transaction()
        .execute((trx) =>
          q.setDeliveryStatus(
            trx,
            { orgId: w.org_id, id: w.id },
            { status: 'skipped', at: now, attempted: false },
          ),
        );
      return;
    }
    const body = JSON.stringify(w.payload);
    const secrets = secretsOf(w);
    const result = await attempt(
      { url: w.url, messageId: w.message_id, body, secrets, at: now },
      cfg,
    );
    if (result.error !== null) {
      // The raw detail (addresses, certificate names) is for operators, never the org's API.
      kt.logger.info(
        { delivery_id: w.id, url: redactedUrl(w.url), error: result.error, detail: result.detail },
        'webhook attempt failed',
      );
    }
    const at = kt.clock.now();
    const outcome = await record(w, result, at, job.retryCount >= job.retryLimit);
    kt.metrics.webhookDeliveries.inc({ result: outcome });
    if (outcome === 'sent') {
      kt.metrics.webhookLagSeconds.observe((at.getTime() - w.occurred_at.getTime()) / 1000);
    }
    if (outcome === 'retried') throw new Error(`delivery failed, will retry: ${result.error}`);
  }

  /** A job pg-boss gave up on by itself (expired, or its worker killed, on the last try). */
  async function abandoned(job: { data: DeliveryJob }): Promise<void> {
    const { org_id, delivery_id, job_id } = job.data;
    if (await q.failAbandoned(db, { orgId: org_id, id: delivery_id }, job_id)) {
      kt.metrics.webhookDeliveries.inc({ result: 'failed' });
    }
  }

  return { relayOnce, kick, deliver, abandoned, running: () => running };
}

/** Starts the relay (LISTEN plus a poll) and the delivery handlers; returns their stop. */
export async function startWebhookWorker(kt: Keytrail, boss: PgBoss) {
  const worker = createWebhookWorker(kt, boss);
  const listener: Listener = listen({
    url: kt.config.databaseUrl,
    channel: WEBHOOK_OUTBOX_CHANNEL,
    logger: kt.logger,
    onMessage: () => worker.kick(),
    onReconnect: () => worker.kick(),
  });
  const poll = setInterval(() => worker.kick(), kt.config.webhooks.relayPollMs);
  poll.unref();
  worker.kick();
  const options = {
    batchSize: 1,
    localConcurrency: kt.config.webhooks.concurrency,
    // Per process: strict (the global, database-tracked limit races between local pollers).
    localGroupConcurrency: kt.config.webhooks.perOrgConcurrency,
    includeMetadata: true,
    pollingIntervalSeconds: 1,
  } as const;
  const id = await boss.work<DeliveryJob, void, typeof options>(
    WEBHOOK_DELIVERY_QUEUE,
    options,
    async ([job]: JobWithMetadata<DeliveryJob>[]) => {
      if (job) await worker.deliver(job);
    },
  );
  const dead = await boss.work<DeliveryJob>(WEBHOOK_DEAD_LETTER_QUEUE, async ([job]) => {
    if (job) await worker.abandoned(job);
  });
  return {
    async stop() {
      clearInterval(poll);
      await listener.close();
      await boss.offWork(WEBHOOK_DELIVERY_QUEUE, { id, wait: true });
      await boss.offWork(WEBHOOK_DEAD_LETTER_QUEUE, { id: dead, wait: true });
      await worker.running();
    },
  };
}
