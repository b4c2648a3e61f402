/**
 * Scenario 4 — read paths at scale (§8): an org with 10k keys and 10M events over 90 days,
 * generated with SQL, rollups rebuilt from the raw rows; then the org usage page, key usage over
 * 90 days, a raw events page and a CSV export, through a real `keytrail serve` process.
 */
import { sql } from 'kysely';
import { createKeytrail, type Keytrail } from '../src/keytrail.ts';
import { runKeyWatch } from '../src/webhooks/watch.ts';
import { createMonthPartition } from '../src/usage/usage.queries.ts';
import { rebuildRollups } from '../src/usage/usage.rebuild.ts';
import { makeKeys } from './ingest.ts';
import {
  PEPPER,
  benchConfig,
  child,
  fmt,
  kysely,
  percentile,
  quick,
  rssKb,
  type Section,
} from './lib.ts';

const DAY = 86_400_000;

export async function generate(url: string, orgId: string, events: number): Promise<number> {
  const db = kysely(url, 1);
  const now = Date.now();
  for (let m = 0; m <= 4; m++) {
    const d = new Date(
      Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth() - m, 1),
    );
    await createMonthPartition(db as never, d.getUTCFullYear(), d.getUTCMonth() + 1);
  }
  const started = performance.now();
  const chunk = 1_000_000;
  // Keys are used unevenly (the square skews traffic toward low key numbers), like real traffic.
  for (let done = 0; done < events; done += chunk) {
    const n = Math.min(chunk, events - done);
    // random() is drawn once per generated row (materialized), never inside the join condition.
    await sql`
      with k as (select id, row_number() over (order by name) - 1 as i from api_keys where org_id = ${orgId}),
      g as materialized (
        select g, floor(power(random(), 2) * (select count(*) from k))::int8 as ki,
               now() - (random() * interval '90 days') as at, (random() * random() * 400)::real as lat
        from generate_series(1, ${n}) as g
      )
      insert into api_key_usage_events
        (event_id, org_id, key_id, occurred_at, method, route, status, latency_ms, ip, user_agent, outcome)
      select gen_random_uuid(), ${orgId}, k.id, g.at,
        (array['GET','GET','POST','DELETE'])[1 + (g % 4)],
        (array['/v1/orders/:id','/v1/orders','/v1/customers/:id','/v1/invoices/:id/pay','/v1/search'])[1 + (g % 5)],
        case when g % 53 = 0 then 503 when g % 17 = 0 then 404 else 200 end,
        g.lat, ('10.' || (g % 200) || '.' || (g % 250) || '.7')::inet, 'client/' || (g % 7), 'success'
      from g join k on k.i = g.ki`.execute(db);
  }
  const seconds = (performance.now() - started) / 1000;
  await sql`analyze api_key_usage_events`.execute(db);
  await db.destroy();
  return seconds;
}

export async function buildRollups(url: string, orgId: string): Promise<number> {
  const db = kysely(url, 1);
  const started = performance.now();
  const today = new Date().toISOString().slice(0, 10);
  const from = new Date(Date.now() - 91 * DAY).toISOString().slice(0, 10);
  // Rebuilds every org's rollups of the range: other scenarios' rows come out the same.
  await rebuildRollups(db as never, from, today);
  await sql`insert into api_key_usage_totals
      (key_id, org_id, request_count, errors_4xx, errors_5xx, denied_count, first_used_at, last_used_at, last_used_ip)
    select key_id, ${orgId}, count(*), count(*) filter (where status between 400 and 499),
      count(*) filter (where status >= 500), 0, min(occurred_at), max(occurred_at),
      (array_agg(ip order by occurred_at desc))[1]
    from api_key_usage_events where org_id = ${orgId} group by key_id`.execute(db);
  // Autovacuum would reach tables this size soon after a bulk load; done here so the reads do
  // not start on an unvacuumed load (hint bits unset, visibility map empty). The checkpoint
  // writes the load back now rather than under the measurements.
  await sql`vacuum (analyze)`.execute(db);
  await sql`checkpoint`.execute(db);
  const seconds = (performance.now() - started) / 1000;
  await db.destroy();
  return seconds;
}

export async function timed(base: string, key: string, paths: string[]): Promise<number[]> {
  const out: number[] = [];
  for (const path of paths) {
    const t = performance.now();
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
    out.push(performance.now() - t);
  }
  return out;
}

export async function readsScenario(url: string): Promise<Section> {
  const keys = quick ? 2_000 : 10_000;
  const events = quick ? 1_000_000 : 10_000_000;
  const { orgId, keyIds } = await makeKeys(url, 'bench-reads', keys - 1);
  const generateSeconds = await generate(url, orgId, events);
  const rollupSeconds = await buildRollups(url, orgId);
  return measureReads(url, orgId, keyIds, {
    dataset: `${fmt(keys)} keys, ${fmt(events)} events over 90 days (generated with SQL in ${generateSeconds.toFixed(0)} s; rollups rebuilt from them, the database vacuumed and checkpointed in ${rollupSeconds.toFixed(0)} s).`,
  });
}

/**
 * A reading key of the org (`before` runs on a keytrail of the database first), then
 * `keytrail serve --no-worker` on it: its base URL, the key, the server to stop.
 */
export async function readerServer(
  url: string,
  orgId: string,
  keyIds: string[],
  before?: (kt: Keytrail) => Promise<void>,
) {
  const kt = createKeytrail(benchConfig(url, { maxKeysPerOrg: 1_000_000 }));
  const reader = await kt.keys.create(
    { id: keyIds[0] ?? '', orgId, environment: 'live', scopes: ['org:admin'] },
    orgId,
    { name: `reader ${Date.now()}`, scopes: ['usage:read', 'events:read'] },
  );
  await before?.(kt);
  await kt.close();
  const server = await child('bin/keytrail.ts', ['serve', '--no-worker'], {
    DATABASE_URL: url,
    KEYTRAIL_KEY_PEPPER: PEPPER,
    KEYTRAIL_LOG_LEVEL: 'warn',
    PORT: '0',
    HOST: '127.0.0.1',
  });
  const base = /listening on (\S+)/.exec(server.line)?.[1]?.replace('localhost', '127.0.0.1') ?? '';
  return { server, base, key: reader.plaintext };
}

/** The measurements of scenario 4 on a prepared dataset (also usable on a kept database). */
export async function measureReads(
  url: string,
  orgId: string,
  keyIds: string[],
  o: { dataset: string },
): Promise<Section> {
  // The worker's key watch flags spikes every 5 minutes; the findings list the flagged keys.
  let watchMs = 0;
  let watch = { spikes: 0 };
  const {
    server,
    base,
    key: readerKey,
  } = await readerServer(url, orgId, keyIds, async (kt) => {
    const watchStarted = performance.now();
    watch = await runKeyWatch(kt.backgroundDatabase.db, {
      now: new Date(),
      spike: kt.config.spike,
    });
    watchMs = performance.now() - watchStarted;
  });
  const n = quick ? 20 : 50;
  const pick = (i: number) => keyIds[(i * 7919) % keyIds.length] ?? '';
  const from90 = new Date(Date.now() - 90 * DAY).toISOString();
  try {
    const key = readerKey;
    const org = `/api/orgs/${orgId}`;
    await timed(base, key, [`${org}/api-keys/usage`, `${org}/api-keys/${pick(1)}/usage`]);
    const paths = {
      org: Array.from({ length: n }, () => `${org}/api-keys/usage?limit=50`),
      filtered: Array.from(
        { length: n },
        (_, i) =>
          `${org}/api-keys/usage?limit=50&status=active&dormant=false&sort=${i % 2 ? 'request_count' : 'name'}`,
      ),
      findings: Array.from({ length: n }, () => `${org}/findings`),
      key: Array.from({ length: n }, (_, i) => `${org}/api-keys/${pick(i)}/usage?from=${from90}`),
      events: Array.from(
        { length: n },
        (_, i) =>
          `${org}/usage-events?limit=100&from=${new Date(Date.now() - (1 + (i % 80)) * DAY).toISOString()}`,
      ),
    };
    // Each list twice: the first pass reads pages PostgreSQL has not cached yet (every key-usage
    // request is another key), the second is the steady state of a working set held in memory.
    const first = {
      org: await timed(base, key, paths.org),
      key: await timed(base, key, paths.key),
      events: await timed(base, key, paths.events),
    };
    const orgPage = await timed(base, key, paths.org);
    const filtered = await timed(base, key, paths.filtered);
    const findings = await timed(base, key, paths.findings);
    const keyPage = await timed(base, key, paths.key);
    const eventsPage = await timed(base, key, paths.events);
    // CSV exports, sampling the server's resident memory. A process's first export grows its
    // buffers and heap to their working size once, whatever its size: a 1-day export does that
    // first. Then the last 10 days, then the last 30 (3× the rows): memory that grew with the
    // rows would show in the second's peak over the first's.
    const exportDays = async (days: number) => {
      const baseline = rssKb(server.proc.pid ?? 0);
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, rssKb(server.proc.pid ?? 0))), 50);
      const t = performance.now();
      const res = await fetch(
        `${base}${org}/usage-events?from=${new Date(Date.now() - days * DAY).toISOString()}`,
        { headers: { authorization: `Bearer ${key}`, accept: 'text/csv' } },
      );
      if (res.status !== 200) throw new Error(`export: ${res.status} ${await res.text()}`);
      let rows = -1;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        for (const byte of chunk) if (byte === 10) rows += 1;
      }
      const seconds = (performance.now() - t) / 1000;
      clearInterval(sampler);
      return { rows, seconds, baseline, peak };
    };
    const warmUp = await exportDays(1);
    const tenDays = await exportDays(10);
    const { rows, seconds: exportSeconds, baseline, peak } = await exportDays(30);
    const growth = peak - Math.max(tenDays.peak, baseline);
    const rate = rows / exportSeconds;
    const row = (name: string, cold: number[], xs: number[]) =>
      `| ${name} | ${fmt(percentile(cold, 0.5))} | ${fmt(percentile(cold, 0.95))} | ${fmt(percentile(xs, 0.5))} | ${fmt(percentile(xs, 0.95))} |`;
    const p95 = (xs: number[]) => percentile(xs, 0.95);
    return {
      title: '4. Read paths at scale',
      lines: [
        `${o.dataset} ${n} sequential requests per path, twice, against \`keytrail serve --no-worker\`, latency measured by the client.`,
        '',
        '| path | first pass p50 ms | first pass p95 ms | second pass p50 ms | second pass p95 ms |',
        '|---|---|---|---|---|',
        row('org usage page (50 keys, sorted by last use)', first.org, orgPage),
        `| org usage page, active and not dormant, by requests or name | | | ${fmt(percentile(filtered, 0.5))} | ${fmt(percentile(filtered, 0.95))} |`,
        `| findings (revoked keys tried, old keys in use, limited, spikes) | | | ${fmt(percentile(findings, 0.5))} | ${fmt(percentile(findings, 0.95))} |`,
        row('key usage, 90 days, day series', first.key, keyPage),
        row('raw events page (100 events)', first.events, eventsPage),
        '',
        'The claims are judged on the second pass (the same requests again, data in memory); the first pass shows the cost of pages PostgreSQL has not cached yet.',
        '',
        `The key watch (spike flags of every key used in the last 24 hours) ran once over the dataset before the reads: ${fmt(watchMs)} ms, ${watch.spikes} spikes flagged.`,
        '',
        `CSV export of 30 days: ${fmt(rows)} rows in ${exportSeconds.toFixed(1)} s = ${fmt(rate)} rows/s; server RSS ${fmt(baseline / 1024)} MB before, peak ${fmt(peak / 1024)} MB during. Before it, in the same process: 1 day (${fmt(warmUp.rows)} rows), RSS ${fmt(warmUp.baseline / 1024)} → ${fmt(warmUp.peak / 1024)} MB (the process's first export: its buffers and heap reach their working size); 10 days (${fmt(tenDays.rows)} rows), peak ${fmt(tenDays.peak / 1024)} MB.`,
      ],
      verdicts: [
        {
          claim: 'org usage page p95',
          target: '≤ 30 ms',
          value: `${fmt(p95(orgPage))} ms`,
          pass: p95(orgPage) <= 30,
        },
        {
          claim: 'org usage page with filters, p95',
          target: '≤ 30 ms',
          value: `${fmt(p95(filtered))} ms`,
          pass: p95(filtered) <= 30,
        },
        {
          claim: 'key usage (90 days) p95',
          target: '≤ 30 ms',
          value: `${fmt(p95(keyPage))} ms`,
          pass: p95(keyPage) <= 30,
        },
        {
          claim: 'raw events page p95',
          target: '≤ 50 ms',
          value: `${fmt(p95(eventsPage))} ms`,
          pass: p95(eventsPage) <= 50,
        },
        {
          claim: 'CSV export rate',
          target: '≥ 200k rows/s',
          value: `${fmt(rate)} rows/s`,
          pass: rate >= 200_000,
        },
        {
          claim: 'CSV export memory: 30 days over 10 days (3× the rows), peak growth',
          target: 'flat',
          value: `${fmt(growth / 1024)} MB`,
          pass: growth < 50 * 1024,
        },
      ],
    };
  } finally {
    await server.stop();
  }
}
