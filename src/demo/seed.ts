/**
 * Seeds the Demo org of the embedded quick start (first start of `make start`): the keys of
 * demo-plan.ts, created, rotated and revoked at their moments in the story, and about two weeks
 * of their usage sent through the normal path (the usage service's report → one pg-boss job per
 * 1,000 events → the worker's ingest), never written into rollups directly.
 *
 * The story happened in the past, so the seeding runs on its own keytrail instance whose clock is
 * moved to each moment: a key created 58 days ago has that creation time in the API and the
 * audit trail, and each batch of events is reported when it would have been (the report window
 * accepts events up to 7 days old).
 */
import type { Config } from '../platform/config.ts';
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/logger.ts';
import { createKeytrail, type Keytrail } from '../keytrail.ts';
import type { IssuedKey } from '../keys/keys.service.ts';
import type { KeyIdentity } from '../keys/keys.types.ts';
import type { Org } from '../orgs/orgs.types.ts';
import { demoPlan, ORG_AGE_MS, type DemoKey } from './demo-plan.ts';
import { generate, prng, type SampleEvent } from './sample-usage.ts';

const BATCH = 1000;
const MAX_SPAN_MS = 6 * 86_400_000;
const SEED = 20261202;

/**
 * `keys`: the sample keys created beside the admin key; `events`: the usage events queued;
 * `failure`: why the sample data stopped short (the org and its admin key exist regardless).
 */
export type DemoOrg = {
  org: Org;
  adminKey: IssuedKey;
  keys: number;
  events: number;
  failure: string | null;
};

type Stream = { keyId: string; events: SampleEvent[] };
type Progress = { keys: number; events: number };

/** A clock the seeding moves through the story (set, not ticking). */
function movableClock(): Clock & { at: number } {
  return {
    at: Date.now(),
    now() {
      return new Date(this.at);
    },
  };
}

const identity = (key: IssuedKey): KeyIdentity => ({
  id: key.apiKey.id,
  orgId: key.apiKey.orgId,
  environment: key.apiKey.environment,
  scopes: key.apiKey.scopes,
});

function streams(
  keyId: string,
  traffic: DemoKey['traffic'],
  key: Pick<DemoKey, 'ips' | 'userAgent'>,
  rand: () => number,
): Stream[] {
  return traffic.map((t) => ({
    keyId,
    events: generate({ ...t, ips: key.ips, userAgent: key.userAgent }, rand),
  }));
}

/** Creates, rotates and revokes the plan's keys at their moments; returns their traffic. */
async function createKeys(
  kt: Keytrail,
  clock: { at: number },
  org: Org,
  admin: IssuedKey,
  now: number,
  done: Progress,
): Promise<Stream[]> {
  const rand = prng(SEED);
  const plan = demoPlan(now);
  const caller = identity(admin);
  const out = streams(admin.apiKey.id, plan.admin.traffic, plan.admin, rand);
  // Key changes happen in the story's order, each at its moment.
  type Step = { at: number; run: () => Promise<void> };
  const steps: Step[] = [];
  for (const k of plan.keys) {
    let keyId = '';
    steps.push({
      at: k.createdAt,
      run: async () => {
        const issued = await kt.keys.create(caller, org.id, {
          name: k.name,
          environment: k.environment,
          scopes: k.scopes,
        });
        keyId = issued.apiKey.id;
        done.keys += 1;
        out.push(...streams(keyId, k.traffic, k, rand));
      },
    });
    const { rotation, revocation } = k;
    if (rotation)
      steps.push({
        at: rotation.at,
        run: async () => {
          const rotated = await kt.keys.rotate(caller, org.id, keyId, rotation.overlapSeconds);
          done.keys += 1;
          out.push(...streams(rotated.apiKey.id, k.successorTraffic ?? [], k, rand));
        },
      });
    if (revocation)
      steps.push({
        at: revocation.at,
        run: () => kt.keys.revoke(caller, org.id, keyId, revocation.reason).then(() => undefined),
      });
  }
  for (const step of steps.sort((a, b) => a.at - b.at)) {
    clock.at = step.at;
    await step.run();
  }
  return out;
}

/**
 * Batches in time order: at most 1,000 events, spanning at most 6 days (the report window takes
 * events up to 7 days old).
 */
export function batches<T extends { occurredAt: number }>(events: readonly T[]): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  for (const e of events) {
    const first = current[0];
    if (first && (current.length === BATCH || e.occurredAt - first.occurredAt > MAX_SPAN_MS)) {
      out.push(current);
      current = [];
    }
    current.push(e);
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** Reports every event in time order, each batch at the moment of its latest event. */
async function reportAll(
  kt: Keytrail,
  clock: { at: number },
  orgId: string,
  all: Stream[],
  done: Progress,
): Promise<void> {
  const events = all
    .flatMap((s) => s.events.map((e) => ({ ...e, keyId: s.keyId })))
    .sort((a, b) => a.occurredAt - b.occurredAt);
  for (const batch of batches(events)) {
    clock.at = (batch.at(-1)?.occurredAt ?? 0) + 1;
    await kt.usage.report(
      orgId,
      batch.map((e) => ({
        keyId: e.keyId,
        occurredAt: new Date(e.occurredAt),
        method: e.method,
        route: e.route,
        status: e.status,
        latencyMs: e.latencyMs,
        ip: e.ip,
        userAgent: e.userAgent,
        outcome: e.outcome,
      })),
    );
    done.events += batch.length;
  }
}

/**
 * Creates the org `name` with the story's keys and usage. Returns once every event is on the
 * queue (durable); the worker ingests them within seconds.
 */
export async function seedDemoOrg(config: Config, logger: Logger, name: string): Promise<DemoOrg> {
  const clock = movableClock();
  const now = clock.at;
  const kt = createKeytrail(config, { logger, clock });
  try {
    clock.at = now - ORG_AGE_MS;
    const { org, adminKey } = await kt.orgs.create(name);
    // The org and its admin key exist from here on: sample data that fails half-way must not
    // cost the quick start its Demo org (the caller still records and prints it).
    // What is done so far, also when a step fails: keys created, events durably queued.
    const done: Progress = { keys: 0, events: 0 };
    try {
      const traffic = await createKeys(kt, clock, org, adminKey, now, done);
      await reportAll(kt, clock, org.id, traffic, done);
      return { org, adminKey, ...done, failure: null };
    } catch (error) {
      logger.warn({ err: String(error), ...done }, 'demo sample data incomplete');
      return { org, adminKey, ...done, failure: String(error) };
    }
  } finally {
    await kt.close();
  }
}
