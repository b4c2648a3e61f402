import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { useTestApp, waitFor } from '../testing/harness.ts';
import {
  createKey,
  createOrg,
  reportEvents,
  type TestKey,
  type TestOrg,
} from '../testing/factories.ts';
import { expectProblem } from '../testing/problem.ts';

const app = useTestApp({
  config: { usage: { tracking: false, flushIntervalMs: 50, batchSize: 1000, bufferMax: 10_000 } },
});
let worker: Worker;
let org: TestOrg;
let reader: TestKey;
let a: TestKey;
let b: TestKey;

beforeAll(async () => {
  worker = await startWorker(app().kt);
  org = await createOrg(app().client, 'Event filters');
  const writer = await createKey(app().client, org, { scopes: ['events:write'] });
  reader = await createKey(app().client, org, { scopes: ['events:read'] });
  a = await createKey(app().client, org);
  b = await createKey(app().client, org);
  const at = (i: number) => new Date(Date.now() - 3_600_000 + i * 1000).toISOString();
  await reportEvents(app().client, org, writer.key, [
    { key_id: a.id, occurred_at: at(0), method: 'GET', route: '/v1/things', status: 200 },
    { key_id: a.id, occurred_at: at(1), method: 'POST', route: '/v1/things', status: 201 },
    { key_id: a.id, occurred_at: at(2), method: 'GET', route: '/v1/things/:id', status: 404 },
    { key_id: b.id, occurred_at: at(3), method: 'GET', route: '/v1/things', status: 500 },
    { key_id: b.id, occurred_at: at(4), method: 'DELETE', route: '/v1/things/:id', status: 503 },
  ]);
  await waitFor(async () => (await page('')).length === 5, { timeoutMs: 10_000 });
});
afterAll(async () => worker.stop());

const url = (query: string) => `/api/orgs/${org.orgId}/usage-events?${query}`;
type Row = { key_id: string; method: string; route: string; status: number | string };

async function page(query: string): Promise<Row[]> {
  const res = await app().client.get(url(query), { key: reader.key });
  expect(res.status).toBe(200);
  return res.body.data;
}
async function csv(query: string): Promise<Row[]> {
  const res = await app().client.get(url(`${query}&format=csv`), { key: reader.key });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/csv');
  return parse(res.text, { columns: true });
}
async function ndjson(query: string): Promise<Row[]> {
  const res = await app().client.get(url(query), {
    key: reader.key,
    headers: { accept: 'application/x-ndjson' },
  });
  expect(res.status).toBe(200);
  return res.text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Row);
}

const summary = (rows: Row[]) => rows.map((r) => `${r.method} ${r.route} ${r.status}`);

describe('raw event filters', () => {
  const cases: [string, string[]][] = [
    [`key_id=${'A'}`, ['GET /v1/things 200', 'POST /v1/things 201', 'GET /v1/things/:id 404']],
    ['status=200', ['GET /v1/things 200']],
    ['status=4xx', ['GET /v1/things/:id 404']],
    ['status=5xx', ['GET /v1/things 500', 'DELETE /v1/things/:id 503']],
    ['method=post', ['POST /v1/things 201']],
    ['route=/v1/things/:id', ['GET /v1/things/:id 404', 'DELETE /v1/things/:id 503']],
    ['outcome=revoked', []],
    [`key_id=${'B'}&status=5xx&method=DELETE`, ['DELETE /v1/things/:id 503']],
  ];

  it.each(cases)('%s selects the same events as JSON pages, NDJSON and CSV', async (q, want) => {
    const query = q.replace('A', a.id).replace('B', b.id);
    expect(summary(await page(query))).toEqual(want);
    expect(summary(await ndjson(query))).toEqual(want);
    expect(summary(await csv(query))).toEqual(want);
  });

  it('keeps every event of the window with outcome=success', async () => {
    expect(await page('outcome=success')).toHaveLength(5);
  });

  it('rejects a window whose from is not before its to with 400', async () => {
    const to = new Date().toISOString();
    const res = await app().client.get(url(`from=${to}&to=${to}`), { key: reader.key });
    expectProblem(res, 400, 'validation_failed');
    expect(res.body.detail).toBe('from must be before to');
  });
});

describe('usage tracking off (KEYTRAIL_USAGE_TRACKING=false)', () => {
  it('records no usage event for a verification, not even of the verified key', async () => {
    const verifier = await createKey(app().client, org, { scopes: ['keys:verify'] });
    const res = await app().client.post('/api/keys/verify', {
      key: verifier.key,
      body: { key: a.key },
    });
    expect(res.body).toMatchObject({ valid: true, code: 'VALID', key_id: a.id });
    expect(app().kt.usage.buffer.size).toBe(0);
    expect(app().kt.usage.buffer.stats.enqueued).toBe(0);
  });
});
