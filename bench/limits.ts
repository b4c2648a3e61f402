/**
 * Scenario 11 — per-key limits (SPEC §11, issue 19). Three parts:
 * 1. the in-memory decision in-process (createRateLimiter with a claimer that grants what it is
 *    asked, so no Postgres: this times `decide()` and `header()` only) and the allowed-IP check;
 * 2. one `keytrail serve --no-worker`, a key without limits and one with a limit it never
 *    reaches, loaded in interleaved rounds: req/s and the server's CPU per request;
 * 3. 1, 2 and 4 `keytrail serve --no-worker` processes on the bench database, one key hammered
 *    through all of them: admitted ÷ limit for a long window (until every instance refuses) and
 *    for five consecutive short windows, counted from the responses received.
 */
import { writeCharts } from './chart.ts';
import { loadWithCpu, type Load } from './cpu.ts';
import { fmt, median, PEPPER, percentile, quick, type Section } from './lib.ts';
import { createKeytrail } from '../src/keytrail.ts';
import { benchConfig } from './lib.ts';
import { compileLimits } from '../src/limits/key-limits.ts';
import { compileAllowedIps } from '../src/limits/ip-allow.ts';
import { ADMITTED, createRateLimiter } from '../src/limits/rate-limiter.ts';
import type { RatePolicy } from '../src/limits/limits.types.ts';
import { spawnServe, stopServe, type ServeProcess } from '../test/serve-processes.ts';

const MONTH = 2_678_400;
type Claimer = Parameters<typeof createRateLimiter>[0]['claim'];
const HUGE: RatePolicy = { name: 'huge', limit: 1e9, windowSeconds: MONTH };

/** A claimer that grants every ask in full: the decision alone, no database. */
const generous: Claimer = (items) =>
  Promise.resolve({
    dbNow: Date.now(),
    instances: 1,
    grants: items.map((i) => ({ ...i, granted: i.want, claimed: i.want, current: true })),
  });

/** Median over interleaved rounds of ns of CPU per call, for each case. */
function interleaved(cases: [string, (n: number) => number][], n: number, rounds: number) {
  const runs = cases.map(() => [] as number[]);
  let sink = 0;
  for (let r = 0; r <= rounds; r++) {
    cases.forEach(([, run], i) => {
      const t = process.cpuUsage();
      sink += run(n);
      const used = process.cpuUsage(t);
      if (r > 0) runs[i]?.push(((used.user + used.system) * 1000) / n); // round 0 warms up
    });
  }
  if (sink === 0.5) process.stdout.write(''); // keeps the results alive
  return cases.map(([name], i) => ({ name, ns: median(runs[i] ?? []) }));
}

async function decisionCpu() {
  const limiter = createRateLimiter({ claim: generous, syncMs: 250 });
  const compile = (keyId: string, rateLimits: RatePolicy[]) => {
    const l = compileLimits({
      keyId,
      limitsId: null,
      allowedIps: [],
      rateLimits,
      orgRateLimits: [],
      quotaGeneration: null,
    });
    if (!l?.rate) throw new Error('no rate limits compiled');
    return { subject: l.subject, rate: l.rate };
  };
  const three: RatePolicy[] = [
    { name: 'burst', limit: 1e9, windowSeconds: 3600 },
    { name: 'daily', limit: 1e9, windowSeconds: 86_400 },
    HUGE,
  ];
  const subjects = {
    one: compile('k1', [HUGE]),
    three: compile('k3', three),
    oneH: compile('k1h', [HUGE]),
    threeH: compile('k3h', three),
  };
  // Credit in hand for every subject (the first claim of a 1e9 limit is 1.25e8).
  for (const s of Object.values(subjects)) {
    limiter.decide(s.subject, s.rate); // rolls into the current window: NEEDS_CREDIT
    await limiter.credit(s.subject, s.rate);
    if (limiter.decide(s.subject, s.rate) !== ADMITTED) throw new Error('no credit');
  }
  let refused = 0;
  const decide = (s: { subject: string; rate: typeof subjects.one.rate }) => (n: number) => {
    let admitted = 0;
    for (let i = 0; i < n; i++) if (limiter.decide(s.subject, s.rate) === ADMITTED) admitted++;
    refused += n - admitted;
    return admitted;
  };
  const withHeader = (s: typeof subjects.one) => (n: number) => {
    let len = 0;
    for (let i = 0; i < n; i++) {
      if (limiter.decide(s.subject, s.rate) !== ADMITTED) refused++;
      len += limiter.header(s.subject, s.rate).length;
    }
    return len;
  };
  const cidrs = Array.from({ length: 10 }, (_, i) => `10.${i}.0.0/16`);
  const allows = compileAllowedIps(cidrs);
  const ip = (addr: string) => (n: number) => {
    let hits = 0;
    for (let i = 0; i < n; i++) if (allows(addr)) hits++;
    return hits;
  };
  const n = quick ? 200_000 : 1_000_000;
  const rows = interleaved(
    [
      ['decide(), 1 policy', decide(subjects.one)],
      ['decide(), 3 policies', decide(subjects.three)],
      ['decide() + header(), 1 policy', withHeader(subjects.oneH)],
      ['decide() + header(), 3 policies', withHeader(subjects.threeH)],
      ['allowed IP, 10 CIDRs, `10.9.1.2`', ip('10.9.1.2')],
      ['allowed IP, 10 CIDRs, `::ffff:10.9.1.2`', ip('::ffff:10.9.1.2')],
    ],
    n,
    quick ? 3 : 7,
  );
  if (refused > 0) throw new Error(`${refused} decisions found no credit`);
  return { rows, n, header: limiter.header(subjects.threeH.subject, subjects.threeH.rate) };
}

type Org = { orgId: string; admin: string };

async function benchOrg(url: string, name: string): Promise<Org> {
  const kt = createKeytrail(benchConfig(url));
  const { org, adminKey } = await kt.orgs.create(name);
  await kt.close();
  return { orgId: org.id, admin: adminKey.plaintext };
}

async function createKey(base: string, org: Org, policies: RatePolicy[]): Promise<string> {
  const res = await fetch(`${base}/api/orgs/${org.orgId}/api-keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${org.admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'bench-limits',
      scopes: ['orders:read'],
      rate_limits: policies.map((p) => ({
        name: p.name,
        limit: p.limit,
        window_seconds: p.windowSeconds,
      })),
    }),
  });
  if (res.status !== 201) throw new Error(`create key: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { key: string }).key;
}

const serveEnv = { KEYTRAIL_KEY_PEPPER: PEPPER };

/** Part 2: limits on vs off through one serve process, interleaved rounds. */
async function overSockets(url: string, org: Org) {
  const seconds = quick ? 3 : 10;
  const rounds = quick ? 2 : 4;
  const serve = await spawnServe(url, serveEnv);
  try {
    const keys = {
      off: await createKey(serve.baseUrl, org, []),
      on: await createKey(serve.baseUrl, org, [HUGE]),
    };
    const pid = serve.child.pid ?? 0;
    const load = (key: string, s: number) =>
      loadWithCpu(
        {
          url: `${serve.baseUrl}/v1/demo/orders/1`,
          headers: { authorization: `Bearer ${key}` },
          pids: { server: pid },
        },
        s,
      );
    await load(keys.off, 1);
    await load(keys.on, 1);
    const runs: Record<'off' | 'on', Load[]> = { off: [], on: [] };
    for (let r = 0; r < rounds; r++) {
      const order: ('off' | 'on')[] = r % 2 === 0 ? ['off', 'on'] : ['on', 'off'];
      for (const k of order) runs[k].push(await load(keys[k], seconds));
    }
    const m = (k: 'off' | 'on', f: (l: Load) => number) => median(runs[k].map(f));
    const ratios = runs.on.map((l, i) => (l.cpuUs.server ?? 0) / (runs.off[i]?.cpuUs.server ?? 1));
    return { m, seconds, rounds, ratios };
  } finally {
    await stopServe(serve);
  }
}

type Tally = { admitted: number; refused: number; other: number; latencies: number[] };

/** `loops` concurrent request loops through `through` in turn until `stop` says so. */
async function hammer(
  key: string,
  through: readonly ServeProcess[],
  loops: number,
  stop: (streak: number[]) => boolean,
): Promise<Tally> {
  const tally: Tally = { admitted: 0, refused: 0, other: 0, latencies: [] };
  const streak = through.map(() => 0);
  let turn = 0;
  const loop = async () => {
    while (!stop(streak)) {
      const i = turn++ % through.length;
      const t = performance.now();
      const res = await fetch(`${through[i]?.baseUrl}/v1/demo/orders/1`, {
        headers: { authorization: `Bearer ${key}` },
      }).catch(() => null);
      await res?.arrayBuffer();
      if (res?.status === 200) {
        tally.admitted += 1;
        tally.latencies.push(performance.now() - t);
        streak[i] = 0;
      } else if (res?.status === 429) {
        tally.refused += 1;
        streak[i] = (streak[i] ?? 0) + 1;
      } else tally.other += 1;
    }
  };
  await Promise.all(Array.from({ length: loops }, loop));
  return tally;
}

/** Claim statements so far, per instance, from its /metrics. */
async function claims(serves: readonly ServeProcess[]): Promise<number[]> {
  return Promise.all(
    serves.map(async (s) => {
      const text = await (await fetch(`${s.baseUrl}/metrics`)).text();
      return Number(/keytrail_limits_claims_total\{result="ok"\} (\d+)/.exec(text)?.[1] ?? 0);
    }),
  );
}

const LOOPS = 24;
const SHORT = { limit: 200, windowMs: 2000, from: 200, to: 1400 };

type ClusterRow = {
  n: number;
  long: { admitted: number; limit: number; refused: number; other: number; seconds: number };
  windows: number[];
  claimsPerSecond: number;
  p50: number;
  p99: number;
};

async function cluster(url: string, org: Org, n: number): Promise<ClusterRow> {
  const serves: ServeProcess[] = [];
  try {
    for (let i = 0; i < n; i++) serves.push(await spawnServe(url, serveEnv));
    const base = serves[0]?.baseUrl ?? '';
    const longLimit = 1000;
    const longKey = await createKey(base, org, [
      { name: 'p', limit: longLimit, windowSeconds: MONTH },
    ]);
    const shortKey = await createKey(base, org, [
      { name: 's', limit: SHORT.limit, windowSeconds: SHORT.windowMs / 1000 },
    ]);
    const c0 = await claims(serves);
    const t0 = performance.now();
    const long = await hammer(longKey, serves, LOOPS, (s) => s.every((x) => x >= 3));
    const longSeconds = (performance.now() - t0) / 1000;
    const windows: number[] = [];
    const latencies = [...long.latencies];
    let other = long.other;
    let busyMs = longSeconds * 1000;
    for (let w = 0; w < (quick ? 3 : 5); w++) {
      // Sent only in [0.2 s, 1.4 s] of a window: every decision falls inside that window.
      while (!(
        Date.now() % SHORT.windowMs >= SHORT.from && Date.now() % SHORT.windowMs < SHORT.from + 300
      ))
        await new Promise((r) => setTimeout(r, 5));
      const end = Date.now() - (Date.now() % SHORT.windowMs) + SHORT.to;
      const t = performance.now();
      const tally = await hammer(shortKey, serves, LOOPS, () => Date.now() >= end);
      busyMs += performance.now() - t;
      windows.push(tally.admitted);
      latencies.push(...tally.latencies);
      other += tally.other;
    }
    const c1 = await claims(serves);
    const perInstance = c1.map((c, i) => c - (c0[i] ?? 0));
    return {
      n,
      long: {
        admitted: long.admitted,
        limit: longLimit,
        refused: long.refused,
        other,
        seconds: longSeconds,
      },
      windows,
      claimsPerSecond: median(perInstance) / (busyMs / 1000),
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
    };
  } finally {
    await Promise.all(serves.map((s) => stopServe(s)));
  }
}

export async function limitsScenario(url: string): Promise<Section> {
  const decisions = await decisionCpu();
  const org = await benchOrg(url, 'bench-limits');
  const sockets = await overSockets(url, org);
  const rows: ClusterRow[] = [];
  for (const n of [1, 2, 4]) rows.push(await cluster(url, org, n));
  return report(decisions, sockets, rows);
}

const pctOf = (x: number, of: number) => (100 * x) / of;
const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);

function chart(rows: ClusterRow[]): void {
  writeCharts('docs/bench/limits.json', [
    {
      file: 'limits-admitted',
      title: 'Admitted as % of the limit, one key hammered through N serve processes',
      unit: '%',
      series: ['admitted ÷ limit'],
      mark: { at: 105, label: 'limit + 5 % (SPEC §11)' },
      bars: rows.flatMap((r) => [
        { label: `${r.n} × serve: 1000 per month`, parts: [pctOf(r.long.admitted, r.long.limit)] },
        {
          label: `${r.n} × serve: 200 per 2 s, worst window`,
          parts: [pctOf(Math.max(...r.windows), SHORT.limit)],
        },
      ]),
    },
  ]);
}

function report(
  d: Awaited<ReturnType<typeof decisionCpu>>,
  s: Awaited<ReturnType<typeof overSockets>>,
  rows: ClusterRow[],
): Section {
  if (!quick) chart(rows);
  const ns = (name: string) => d.rows.find((r) => r.name.startsWith(name))?.ns ?? 0;
  const cpuOn = s.m('on', (l) => l.cpuUs.server ?? 0);
  const cpuOff = s.m('off', (l) => l.cpuUs.server ?? 0);
  // Admitting less than the limit is a defect too: the verdict wants [0.95, 1.05].
  const long = rows.map((r) => r.long.admitted / r.long.limit);
  const short = rows.flatMap((r) => r.windows.map((w) => w / SHORT.limit));
  const within = (xs: number[]) => Math.min(...xs) >= 0.95 && Math.max(...xs) <= 1.05;
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}`;
  return {
    title: '11. Per-key limits (issue 19)',
    lines: [
      `Decision in-process: \`createRateLimiter\` with a claimer that grants every ask (no Postgres), a key holding credit; ${fmt(d.n, 0)} calls × ${quick ? 3 : 7} interleaved rounds per case, median ns of CPU per call. A 3-policy \`RateLimit\` field: \`${d.header}\`.`,
      '',
      '| case | ns per call |',
      '|---|---|',
      ...d.rows.map((r) => `| ${r.name} | ${fmt(r.ns, 0)} |`),
      '',
      `Over sockets: one \`keytrail serve --no-worker\` (tracking off), \`GET /v1/demo/orders/:id\`, autocannon -c 32, ${s.rounds} interleaved rounds of ${s.seconds} s per key (medians); the limited key has one policy of 10⁹ per ${fmt(MONTH, 0)} s (never refuses).`,
      '',
      '| key | req/s | p50 ms | p99 ms | server µs per request |',
      '|---|---|---|---|---|',
      ...(['off', 'on'] as const).map(
        (k) =>
          `| ${k === 'off' ? 'no limits' : 'rate-limited'} | ${fmt(s.m(k, (l) => l.rps))} | ${fmt(s.m(k, (l) => l.p50))} | ${fmt(s.m(k, (l) => l.p99))} | ${fmt(
            s.m(k, (l) => l.cpuUs.server ?? 0),
            1,
          )} |`,
      ),
      '',
      `Limited ÷ unlimited server CPU: ${(cpuOn / cpuOff).toFixed(2)}× (medians); per round ${s.ratios.map((r) => r.toFixed(2)).join(', ')}.`,
      '',
      `Across instances: N \`keytrail serve --no-worker\` (tracking off, sync every 250 ms) on one database, ${LOOPS} request loops sending to the N in turn. Long window: 1,000 per ${fmt(MONTH, 0)} s, until every instance refused 3 times in a row. Short window: ${SHORT.limit} per ${SHORT.windowMs / 1000} s, ${quick ? 3 : 5} consecutive windows, sending only in [${SHORT.from / 1000} s, ${SHORT.to / 1000} s] of each. Claims: claim statements per second per instance (median instance, \`keytrail_limits_claims_total\`) over both runs; latency of admitted requests.`,
      '',
      '| instances | long: admitted ÷ limit | long: refused | short: admitted per window | short: max ÷ limit | short: mean ÷ limit | claims/s per instance | p50 ms | p99 ms |',
      '|---|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.n} | ${fmt(r.long.admitted, 0)} ÷ ${fmt(r.long.limit, 0)} = ${(r.long.admitted / r.long.limit).toFixed(3)} | ${fmt(r.long.refused, 0)} | ${r.windows.join(', ')} | ${(Math.max(...r.windows) / SHORT.limit).toFixed(3)} | ${(mean(r.windows) / SHORT.limit).toFixed(3)} | ${fmt(r.claimsPerSecond, 1)} | ${fmt(r.p50)} | ${fmt(r.p99)} |`,
      ),
      '',
      ...(quick
        ? []
        : ['![Admitted ÷ limit per number of instances](bench/limits-admitted.svg)', '']),
      `Answers other than 200 and 429: ${rows.reduce((a, r) => a + r.long.other, 0)}.`,
    ],
    verdicts: [
      {
        claim: 'rate-limit decision, 3 policies, in-process (§11)',
        target: '≤ 1 µs',
        value: `${fmt(ns('decide(), 3'), 0)} ns`,
        pass: ns('decide(), 3') <= 1000,
      },
      {
        claim: 'admitted ÷ limit, 1/2/4 instances, long window (§11)',
        target: '0.95–1.05',
        value: range(long),
        pass: within(long),
      },
      {
        claim: 'admitted ÷ limit per window, 1/2/4 instances, 2 s window (§11)',
        target: '0.95–1.05',
        value: range(short),
        pass: within(short),
      },
    ],
  };
}
