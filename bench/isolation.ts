/**
 * Scenario 10 — no org starves another (SPEC §9): one org with millions of raw events runs 16
 * wide raw-event pages at once, in a loop (a range of 90 days and a filter matching nothing: a
 * scan of the whole org), while another org creates keys, authenticates each new key once, and
 * has its usage ingested. Latencies of the quiet org, alone and under the hammering, through a
 * real `keytrail serve` (worker in-process) on one Postgres.
 */
import { createKeytrail } from '../src/keytrail.ts';
import { makeKeys } from './ingest.ts';
import { generate } from './reads.ts';
import { writeCharts } from './chart.ts';
import { benchConfig, child, fmt, keytrailEnv, percentile, quick, type Section } from './lib.ts';

const DAY = 86_400_000;
const HAMMERS = 16;

type Sample = { create: number; firstAuth: number; ingest: number };

async function call(base: string, key: string, path: string, init: RequestInit = {}) {
  const t = performance.now();
  const res = await fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  });
  const body = await res.text();
  return { status: res.status, body, ms: performance.now() - t };
}

/** One round of the quiet org: create a key, use it once, wait until that use is ingested. */
async function quietRound(base: string, orgId: string, admin: string): Promise<Sample | null> {
  const created = await call(base, admin, `/api/orgs/${orgId}/api-keys`, {
    method: 'POST',
    body: JSON.stringify({ name: 'quiet', scopes: ['orders:read'] }),
  });
  if (created.status !== 201) return null;
  const { key, api_key } = JSON.parse(created.body) as { key: string; api_key: { id: string } };
  const used = await call(base, key, '/v1/demo/orders/1');
  if (used.status !== 200) return null;
  const t = performance.now();
  for (let i = 0; i < 300; i++) {
    const got = await call(base, admin, `/api/orgs/${orgId}/api-keys/${api_key.id}`);
    if (got.status === 200 && (JSON.parse(got.body) as { request_count: number }).request_count > 0)
      return { create: created.ms, firstAuth: used.ms, ingest: performance.now() - t };
    await new Promise((r) => setTimeout(r, 25));
  }
  return null;
}

async function quietRounds(base: string, orgId: string, admin: string, n: number): Promise<Rounds> {
  const samples: Sample[] = [];
  let failed = 0;
  for (let i = 0; i < n; i++) {
    const s = await quietRound(base, orgId, admin);
    if (s) samples.push(s);
    else failed += 1;
  }
  return { samples, failed };
}

/** 16 loops of wide raw-event pages until `stop`; counts answers by status. */
function hammer(base: string, orgId: string, key: string) {
  const statuses: Record<number, number> = {};
  let stopped = false;
  const from = new Date(Date.now() - 90 * DAY).toISOString();
  const path = `/api/orgs/${orgId}/usage-events?from=${from}&route=/nothing&limit=100`;
  const loops = Array.from({ length: HAMMERS }, async () => {
    while (!stopped) {
      const res = await call(base, key, path).catch(() => ({ status: 0 }));
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      // A refused read is retried after its Retry-After, as a well-behaved client would.
      if (res.status === 429) await new Promise((r) => setTimeout(r, 1000));
    }
  });
  return {
    statuses,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

export async function isolationScenario(url: string): Promise<Section> {
  const events = quick ? 1_000_000 : 4_000_000;
  const rounds = quick ? 10 : 30;
  const { orgId: loudOrg, keyIds } = await makeKeys(url, 'bench-isolation-loud', 100);
  await generate(url, loudOrg, events);
  const kt = createKeytrail(benchConfig(url));
  const actor = {
    id: keyIds[0] ?? '',
    orgId: loudOrg,
    environment: 'live' as const,
    scopes: ['org:admin'],
  };
  const loud = await kt.keys.create(actor, loudOrg, { name: 'loud', scopes: ['events:read'] });
  const { org: quiet, adminKey } = await kt.orgs.create('bench-isolation-quiet');
  await kt.close();
  const server = await child('bin/keytrail.ts', ['serve'], keytrailEnv(url));
  const base = /listening on (\S+)/.exec(server.line)?.[1]?.replace('localhost', '127.0.0.1') ?? '';
  try {
    await quietRounds(base, quiet.id, adminKey.plaintext, 3); // warm-up
    const alone = await quietRounds(base, quiet.id, adminKey.plaintext, rounds);
    const load = hammer(base, loudOrg, loud.plaintext);
    await new Promise((r) => setTimeout(r, 2000));
    const hammered = await quietRounds(base, quiet.id, adminKey.plaintext, rounds);
    await load.stop();
    return report(events, rounds, alone, hammered, load.statuses);
  } finally {
    await server.stop();
  }
}

type Rounds = { samples: Sample[]; failed: number };
/** [table label, field, chart label] */
const OPS: [string, keyof Sample, string][] = [
  ['key creation', 'create', 'key creation'],
  ['first authentication of the new key', 'firstAuth', 'first authentication'],
  ['use → ingested (request_count visible)', 'ingest', 'use → ingested'],
];
const pct = (r: Rounds, f: keyof Sample, q: number) =>
  percentile(
    r.samples.map((x) => x[f]),
    q,
  );

/** docs/bench/isolation.svg: p95 of each of the quiet org's steps, alone and hammered. */
function chart(alone: Rounds, hammered: Rounds): void {
  writeCharts('docs/bench/isolation.json', [
    {
      file: 'isolation',
      title: `The quiet org's p95 (ms), alone and while another org hammers raw-event pages`,
      unit: 'ms',
      series: ['p95'],
      bars: OPS.flatMap(([, f, short]) => [
        { label: `${short}, alone`, parts: [pct(alone, f, 0.95)] },
        { label: `${short}, hammered`, parts: [pct(hammered, f, 0.95)] },
      ]),
    },
  ]);
}

function report(
  events: number,
  rounds: number,
  alone: Rounds,
  hammered: Rounds,
  statuses: Record<number, number>,
): Section {
  if (!quick) chart(alone, hammered);
  const ms = (r: Rounds, f: keyof Sample, q: number) => fmt(pct(r, f, q), 0);
  const answers = Object.entries(statuses)
    .map(([s, n]) => `${fmt(n, 0)} × ${s}`)
    .join(', ');
  const verdict = (claim: string, f: keyof Sample) => ({
    claim: `${claim} p95, another org hammering`,
    target: '≤ 250 ms',
    value: `${ms(hammered, f, 0.95)} ms`,
    pass: pct(hammered, f, 0.95) <= 250,
  });
  return {
    title: '10. No org starves another',
    lines: [
      `One org with ${fmt(events, 0)} raw events runs ${HAMMERS} wide raw-event pages at once in a loop (90 days, a route matching nothing); another org meanwhile runs ${rounds} rounds of: create a key, use it once (its first authentication, a cache miss), wait until that use is ingested. \`keytrail serve\` with its worker, one Postgres, defaults (reads pool 4, 2 reads per org).`,
      '',
      '| quiet org, ms | alone p50 | alone p95 | hammered p50 | hammered p95 |',
      '|---|---|---|---|---|',
      ...OPS.map(
        ([name, f]) =>
          `| ${name} | ${ms(alone, f, 0.5)} | ${ms(alone, f, 0.95)} | ${ms(hammered, f, 0.5)} | ${ms(hammered, f, 0.95)} |`,
      ),
      '',
      ...(quick ? [] : ['![The quiet org alone and hammered](bench/isolation.svg)', '']),
      `Rounds failed: ${alone.failed} alone, ${hammered.failed} hammered. The loud org's answers: ${answers}.`,
    ],
    verdicts: [verdict('key creation', 'create'), verdict('first authentication', 'firstAuth')],
  };
}
