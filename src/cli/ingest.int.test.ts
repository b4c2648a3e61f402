/**
 * Dead-lettered ingest jobs end to end: a job the ingest keeps failing is dead-lettered, counted
 * in /metrics and logged; `keytrail ingest replay-dead` moves it back once the cause is fixed,
 * and the running worker ingests it, each event exactly once.
 */
import { sql } from 'kysely';
import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { ingestUsageHandler } from '../../workers/ingest-usage.ts';
import { ensureQueues, sendJob } from '../platform/queue.ts';
import { createOrg, usageEvent, type TestOrg } from '../testing/factories.ts';
import { waitFor } from '../testing/harness.ts';
import { runInProcess, useCliTestApp } from '../testing/cli.ts';
import { countDeadIngestJobs } from '../usage/usage.dead-letters.ts';
import { createIngester } from '../usage/usage.ingest.ts';
import { packEvents, USAGE_DEAD_LETTER_QUEUE, USAGE_INGEST_QUEUE } from '../usage/usage.jobs.ts';
import { ensurePartitionsAhead } from '../usage/usage.partitions.ts';
import { queuesFor } from '../usage/usage.queues.ts';

const t = useCliTestApp();
const cli = (...args: string[]) => runInProcess(args, t.env);
let org: TestOrg;
let boss: PgBoss;
let worker: Worker;

beforeAll(async () => {
  await ensurePartitionsAhead(t.app.kt.database.db, new Date(), 2);
  org = await createOrg(t.app.client, 'Dead letters');
  boss = await t.app.kt.queue();
  // The dead-letter gauge recounts every 30 s in production; here often, for waitFor.
  worker = await startWorker(t.app.kt, { deadLetterRefreshMs: 100 });
});
afterAll(async () => worker.stop());
// A test that failed midway must not leave the next one an events table refusing inserts.
afterEach(async () => {
  await sql`drop trigger if exists refuse_event on api_key_usage_events`.execute(db());
});

const db = () => t.app.kt.database.db;
const event = (n: number) =>
  usageEvent({ orgId: org.orgId, keyId: org.adminKeyId, occurredAt: Date.now() - 60_000 }, n);

/** Makes the events table refuse one event id: an ingest that fails on every attempt. */
async function refuseEvent(eventId: string | null): Promise<void> {
  if (eventId === null) {
    await sql`drop trigger refuse_event on api_key_usage_events`.execute(db());
    return;
  }
  await sql`create or replace function refuse_event() returns trigger language plpgsql as $$
    begin
      if new.event_id = ${sql.lit(eventId)}::uuid then raise exception 'refused for the test'; end if;
      return new;
    end $$`.execute(db());
  await sql`create trigger refuse_event before insert on api_key_usage_events
    for each row execute function refuse_event()`.execute(db());
}

async function stored(eventIds: string[]): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from api_key_usage_events
    where org_id = ${org.orgId} and event_id = any(${eventIds}::uuid[])`.execute(db());
  return rows[0]?.n ?? 0;
}

const requests = async (): Promise<number> =>
  Number(
    (
      await db()
        .selectFrom('api_key_usage_totals')
        .select('request_count')
        .where('key_id', '=', org.adminKeyId)
        .executeTakeFirst()
    )?.request_count ?? 0,
  );

async function metric(name: string): Promise<number | undefined> {
  // A scrape must answer whatever Postgres does: one slower than a second fails the test.
  const res = await fetch(`${t.app.baseUrl}/metrics`, { signal: AbortSignal.timeout(1_000) });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

const counter = async (name: string) => (await metric(name)) ?? 0;
const EXHAUSTED = 'keytrail_usage_jobs_dead_lettered_total{reason="retries_exhausted"}';
const GAUGE = 'keytrail_usage_dead_letter_jobs';
/** The gauge is refreshed in the background: wait for it to show `n`. */
const gaugeShows = (n: number) => waitFor(async () => (await metric(GAUGE)) === n);

const CHECKED = 'keytrail_usage_dead_letter_checked_timestamp_seconds';
const refreshFailures = () =>
  t.app.logs.filter((l) => l.includes('dead-letter count failed')).length;

/** Empties the dead-letter queue (a test that counts starts from none). */
async function clearDead(): Promise<void> {
  await sql`delete from pgboss.job where name = ${USAGE_DEAD_LETTER_QUEUE}`.execute(db());
}

/** Keep-until minus creation, in days, of the dead-lettered jobs (or of the one from `sourceId`). */
async function keptDays(sourceId?: string): Promise<number[]> {
  const { rows } = await sql<{ days: number }>`
    select extract(epoch from keep_until - created_on) / 86400 as days from pgboss.job
    where name = ${USAGE_DEAD_LETTER_QUEUE}
      and (${sourceId ?? null}::uuid is null or source_id = ${sourceId ?? null}::uuid)`.execute(
    db(),
  );
  return rows.map((r) => Number(r.days));
}

const jsonOf = async (...args: string[]) => {
  const res = await cli('ingest', 'replay-dead', '--json', ...args);
  expect(res).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(res.stdout) as Record<string, unknown>;
};

describe('keytrail ingest replay-dead', () => {
  it('replays a dead-lettered job once fixed; each event is stored and counted once', async () => {
    const [first, second] = [event(9001), event(9002)];
    await sendJob(boss, USAGE_INGEST_QUEUE, await packEvents([first]));
    await waitFor(async () => (await stored([first.eventId])) === 1);
    const before = await requests();

    // Refused on its only attempt (a job-level limit of 0 retries): dead-lettered at once.
    await refuseEvent(second.eventId);
    const exhausted = await counter(EXHAUSTED);
    const id = await boss.send(USAGE_INGEST_QUEUE, await packEvents([first, second]), {
      retryLimit: 0,
    });
    await waitFor(async () => (await countDeadIngestJobs(boss)) === 1, { timeoutMs: 15_000 });
    await gaugeShows(1);
    // Kept as long as raw events (KEYTRAIL_RETENTION_DAYS) for a replay, not pg-boss's 14 days.
    const [days] = await keptDays(id ?? undefined);
    expect(days).toBeCloseTo(t.app.kt.config.retentionDays, 3);
    // Its own limit of 0 retries made its first attempt its last: said so, and counted.
    const line = t.app.logs.find((l) => l.includes(`"job_id":"${id}"`));
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      level: 50,
      msg: 'usage job failed its last retry; sent to dead letter',
    });
    expect(await counter(EXHAUSTED)).toBe(exhausted + 1);

    expect(await jsonOf('--dry-run')).toEqual({ would_replay: 1, capped: false, dry_run: true });
    expect(await countDeadIngestJobs(boss)).toBe(1);

    await refuseEvent(null);
    expect(await jsonOf()).toEqual({ replayed: 1, dry_run: false });
    await waitFor(async () => (await stored([second.eventId])) === 1, { timeoutMs: 15_000 });
    expect(await stored([first.eventId, second.eventId])).toBe(2);
    // The replayed job carried `first` again: stored before, so not counted again.
    expect(await requests()).toBe(before + 1);
    expect(await countDeadIngestJobs(boss)).toBe(0);
    await gaugeShows(0);

    const again = await cli('ingest', 'replay-dead');
    expect(again).toMatchObject({
      code: 0,
      stdout: 'replayed 0 dead-lettered ingest jobs to usage.ingest\n',
    });
  }, 60_000);

  it('dead-letters an invalid payload at once with a counted, logged reason; a replay moves it once', async () => {
    const id = await sendJob(boss, USAGE_INGEST_QUEUE, { v: 1, junk: true });
    await waitFor(async () => (await countDeadIngestJobs(boss)) === 1, { timeoutMs: 15_000 });
    expect(
      await metric('keytrail_usage_jobs_dead_lettered_total{reason="invalid_payload"}'),
    ).toBeGreaterThanOrEqual(1);
    const line = t.app.logs.find((l) => l.includes(`"job_id":"${id}"`));
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      level: 50,
      job_id: id,
      reason: expect.stringMatching(/invalid column|expected/) as unknown,
      msg: 'invalid usage payload sent to dead letter',
    });

    // Still invalid: moved back once, dead-lettered again, and not swept in a second time.
    expect(await jsonOf()).toEqual({ replayed: 1, dry_run: false });
    await waitFor(async () => (await countDeadIngestJobs(boss)) === 1, { timeoutMs: 15_000 });
  }, 60_000);

  it('counts and logs a job that fails its last retry', async () => {
    const metrics = t.app.kt.metrics;
    const handler = ingestUsageHandler({
      ingester: createIngester(t.app.kt.database),
      logger: t.app.kt.logger,
      metrics,
    });
    const e = event(9003);
    const exhausted = await counter(EXHAUSTED);
    await refuseEvent(e.eventId);
    try {
      const job = { id: 'last-try', data: await packEvents([e]), retryCount: 10 };
      const results = await handler([job as never]);
      expect(results).toEqual([expect.objectContaining({ id: 'last-try', status: 'failed' })]);
    } finally {
      await refuseEvent(null);
    }
    expect(await counter(EXHAUSTED)).toBe(exhausted + 1);
    const line = t.app.logs.find((l) => l.includes('"job_id":"last-try"'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      level: 50,
      msg: 'usage job failed its last retry; sent to dead letter',
      err: expect.stringContaining('refused for the test') as unknown,
    });
  });

  it('takes the replay cutoff from the database clock, not the machine running the command', async () => {
    await clearDead();
    const e = event(9004);
    await sendJob(boss, USAGE_DEAD_LETTER_QUEUE, await packEvents([e]));
    // The operator's machine an hour behind the database: its own clock would leave the job out.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() - 3_600_000);
    try {
      expect(await jsonOf()).toEqual({ replayed: 1, dry_run: false });
    } finally {
      vi.useRealTimers();
    }
    await waitFor(async () => (await stored([e.eventId])) === 1, { timeoutMs: 15_000 });
  }, 60_000);

  it('says 10000+ when more than 10,000 jobs wait, in text and JSON', async () => {
    await clearDead();
    await boss.insert(
      USAGE_DEAD_LETTER_QUEUE,
      Array.from({ length: 10_001 }, () => ({ data: {} })),
    );
    try {
      expect(await jsonOf('--dry-run')).toEqual({
        would_replay: 10_000,
        capped: true,
        dry_run: true,
      });
      expect(await cli('ingest', 'replay-dead', '--dry-run')).toMatchObject({
        code: 0,
        stdout: 'would replay 10000+ dead-lettered ingest jobs (dry run: nothing moved)\n',
      });
      await gaugeShows(10_001);
    } finally {
      await clearDead();
    }
  }, 60_000);

  it('applies a changed retention to the jobs already dead-lettered', async () => {
    await clearDead();
    await sendJob(boss, USAGE_DEAD_LETTER_QUEUE, { v: 1 });
    try {
      await ensureQueues(boss, queuesFor(30));
      expect(await keptDays()).toEqual([expect.closeTo(30, 3)]);
    } finally {
      await ensureQueues(boss, queuesFor(t.app.kt.config.retentionDays));
    }
    expect(await keptDays()).toEqual([expect.closeTo(t.app.kt.config.retentionDays, 3)]);
    await clearDead();
  });
});

describe('the dead-letter gauge', () => {
  it('answers /metrics while the count is blocked, and shows the count once it is read', async () => {
    await clearDead();
    await gaugeShows(0);
    const failedBefore = refreshFailures();
    const lock = new pg.Client({ connectionString: t.app.kt.config.databaseUrl });
    await lock.connect();
    try {
      await lock.query('begin');
      await lock.query('lock table pgboss.job in access exclusive mode');
      // Every scrape answers at once (metric() gives up after 1 s), with the last count.
      expect(await metric(GAUGE)).toBe(0);
      const checked = await metric(CHECKED);
      await waitFor(() => refreshFailures() > failedBefore, { timeoutMs: 10_000 });
      expect(await metric(GAUGE)).toBe(0);
      expect(await metric(CHECKED)).toBe(checked);
    } finally {
      await lock.query('rollback');
      await lock.end();
    }
    const unblocked = Date.now() / 1000;
    await sendJob(boss, USAGE_DEAD_LETTER_QUEUE, { v: 1 });
    await gaugeShows(1);
    expect(await metric(CHECKED)).toBeGreaterThanOrEqual(Math.floor(unblocked));
    await clearDead();
  }, 30_000);
});
