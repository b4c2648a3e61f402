/**
 * The CSV export's own promises, on a small table: no formula reaches the auditor's spreadsheet,
 * and the query streams the index in order instead of sorting the range first.
 */
import { parse } from 'csv-parse/sync';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import {
  createKey,
  createOrg,
  reportEvents,
  type TestKey,
  type TestOrg,
} from '../testing/factories.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { eventsCsvSelect } from './events.queries.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let worker: Worker;
let org: TestOrg;
let key: TestKey;
const start = Date.now() - 3_600_000;
const FORMULAS = ['=HYPERLINK("http://x","y")', '+1+1', '-2+3', '@SUM(A1)', '\tTAB', '\rCR'];

beforeAll(async () => {
  app = await startTestApp(dbUrl(), {
    config: { usage: { tracking: false, flushIntervalMs: 50, batchSize: 1000, bufferMax: 10_000 } },
  });
  worker = await startWorker(app.kt);
  org = await createOrg(app.client, 'CSV');
  const writer = await createKey(app.client, org, { scopes: ['events:write'] });
  key = await createKey(app.client, org);
  const events = Array.from({ length: 2000 }, (_, i) => ({
    key_id: key.id,
    occurred_at: new Date(start + i * 100).toISOString(),
    user_agent: i < FORMULAS.length ? FORMULAS[i] : `agent/${i % 7}`,
  }));
  await reportEvents(app.client, org, writer.key, events);
  await waitFor(async () => {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from api_key_usage_events
      where org_id = ${org.orgId}`.execute(app.kt.database.db);
    return rows[0]?.n === 2000;
  });
});
afterAll(async () => {
  await worker.stop();
  await app.close();
});

describe('CSV export', () => {
  it('neutralises cells a spreadsheet would run as formulas, and nothing else', async () => {
    const res = await app.client.get(
      `/api/orgs/${org.orgId}/usage-events?from=${new Date(start - 1000).toISOString()}`,
      { key: org.adminKey, headers: { accept: 'text/csv' } },
    );
    expect(res.status).toBe(200);
    const rows = parse<Record<string, string>>(res.text, { columns: true, relax_quotes: true });
    expect(rows).toHaveLength(2000);
    expect(rows.slice(0, FORMULAS.length).map((r) => r.user_agent)).toEqual(
      FORMULAS.map((f) => `'${f}`),
    );
    expect(rows.slice(FORMULAS.length).every((r) => /^agent\/\d$/.test(r.user_agent ?? ''))).toBe(
      true,
    );
    // The JSON API keeps the stored text as it is: only the spreadsheet format is defused.
    const json = await app.client.get(
      `/api/orgs/${org.orgId}/usage-events?from=${new Date(start - 1000).toISOString()}&limit=3`,
      { key: org.adminKey },
    );
    expect(json.body.data[0].user_agent).toBe(FORMULAS[0]);
  });

  it('reads the index in (occurred_at, event_id) order: the plan has no Sort node', async () => {
    const query = eventsCsvSelect({
      orgId: org.orgId,
      from: new Date(start - 1000),
      to: new Date(),
    });
    // With sorting priced out, a Sort left in the plan means no index path gives this order
    // (ORDER BY resolving to the to_char output column did exactly that).
    const plan = await app.kt.database.db.transaction().execute(async (trx) => {
      await sql`set local enable_sort = off`.execute(trx);
      const { rows } = await sql<{
        'QUERY PLAN': unknown;
      }>`explain (format json) ${sql.raw(query)}`.execute(trx);
      return JSON.stringify(rows[0]?.['QUERY PLAN']);
    });
    expect(plan).not.toMatch(/"Node Type":\s*"(Sort|Incremental Sort)"/);
    expect(plan).toMatch(/Index/);
  });
});
