/**
 * Export links (SPEC §7, docs/adr/0013-export-links.md): a key makes a link, the link downloads
 * the export once without credentials, with the power the key has when the download starts; the
 * export's progress and end are readable by the org.
 */
import { parse } from 'csv-parse/sync';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createOrg, type TestKey, type TestOrg } from '../testing/factories.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';
import { deleteOldExportLinks } from './export-links.service.ts';
import { ensurePartitionsAhead } from './usage.partitions.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let org: TestOrg;
let reader: TestKey;
let used: TestKey;
const start = Date.now() - 3_600_000;
const AGENTS = ['plain/1.0', 'comma, inside/2', 'quote "inside"/3', 'new\nline/4', null];
const EVENTS = 25;

/** Events of `key` straight into the table, `at` ms apart from `from`, with awkward agents. */
async function insertEvents(key: TestKey, from: number, count: number): Promise<void> {
  const rows = Array.from({ length: count }, (_, i) => i);
  await sql`insert into api_key_usage_events
      (event_id, org_id, key_id, occurred_at, method, route, status, latency_ms, ip, user_agent, outcome)
    select gen_random_uuid(), ${org.orgId}::uuid, ${key.id}::uuid,
      ${new Date(from)}::timestamptz + i * interval '1 second', 'GET', '/v1/things/:id',
      case when i % 5 = 0 then 500 else 200 end, 2.5, '10.1.2.3',
      (${AGENTS}::text[])[1 + i % ${AGENTS.length}], 'success'
    from unnest(${rows}::int[]) as i`.execute(app.kt.database.db);
}

async function makeLink(key: string, body: Record<string, unknown>) {
  const res = await app.client.post(`/api/orgs/${org.orgId}/exports`, { key, body });
  expect(res.status, res.text).toBe(201);
  return res.body as { id: string; url: string; state: string; expires_at: string };
}

const status = async (id: string, key = reader.key) =>
  (await app.client.get(`/api/orgs/${org.orgId}/exports/${id}`, { key })).body;

beforeAll(async () => {
  app = await startTestApp(dbUrl(), { config: { usage: { tracking: false } as never } });
  // The month of `start` and the next (no worker runs here to make them).
  await ensurePartitionsAhead(app.kt.database.db, new Date(start), 2);
  org = await createOrg(app.client, 'Exports');
  reader = await createKey(app.client, org, { name: 'auditor', scopes: ['events:read'] });
  used = await createKey(app.client, org, { name: 'used' });
  await insertEvents(used, start, EVENTS);
}, 60_000);
afterAll(async () => {
  await app.close();
});

const range = { from: new Date(start - 1000).toISOString() };

describe('export links', () => {
  it('downloads the same CSV as the keyed API, once, and reports the rows it sent', async () => {
    const to = new Date(start + 3_600_000 - 1).toISOString();
    const link = await makeLink(reader.key, { ...range, to });
    expect(link).toMatchObject({ state: 'ready', url: expect.stringMatching(/^\/api\/exports\//) });
    expect(Date.parse(link.expires_at) - Date.now()).toBeLessThanOrEqual(60_000);

    const file = await app.client.get(link.url);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(file.headers.get('content-disposition')).toMatch(
      /^attachment; filename="?usage-events-/,
    );
    expect(file.headers.get('cache-control')).toBe('no-store');
    const keyed = await app.client.get(
      `/api/orgs/${org.orgId}/usage-events?${new URLSearchParams({ ...range, to }).toString()}`,
      { key: reader.key, headers: { accept: 'text/csv' } },
    );
    expect(file.text).toBe(keyed.text);
    expect(parse(file.text)).toHaveLength(EVENTS + 1);

    // Its rows counted right though agents hold quotes, commas and a newline.
    await waitFor(async () => (await status(link.id)).state === 'done');
    expect(await status(link.id)).toMatchObject({
      rows: EVENTS,
      bytes: Buffer.byteLength(file.text),
      detail: null,
    });
    expectProblem(await app.client.get(link.url), 404, 'not_found');
  });

  it('ends the range when the download starts when `to` is left out', async () => {
    const link = await makeLink(reader.key, { ...range, key_id: used.id });
    // Used after the link was made, before the download: in the file.
    await insertEvents(used, Date.now() - 200, 1);
    const file = await app.client.get(link.url);
    expect(parse(file.text)).toHaveLength(EVENTS + 2);
  });

  it('streams NDJSON when asked', async () => {
    const to = new Date().toISOString();
    const link = await makeLink(reader.key, { ...range, to, format: 'ndjson', status: '5xx' });
    const file = await app.client.get(link.url);
    expect(file.headers.get('content-type')).toContain('application/x-ndjson');
    expect(file.headers.get('content-disposition')).toMatch(/\.ndjson"?$/);
    const lines = file.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { status: number });
    expect(lines.length).toBeGreaterThanOrEqual(5);
    expect(lines.every((e) => e.status === 500)).toBe(true);
    const keyed = await app.client.get(
      `/api/orgs/${org.orgId}/usage-events?${new URLSearchParams({ ...range, to, status: '5xx' }).toString()}`,
      { key: reader.key, headers: { accept: 'application/x-ndjson' } },
    );
    expect(file.text).toBe(keyed.text);
    await waitFor(async () => (await status(link.id)).state === 'done');
    expect((await status(link.id)).rows).toBe(lines.length);
  });

  it('refuses a bad request when the link is made, not when it is used', async () => {
    const bad = await app.client.post(`/api/orgs/${org.orgId}/exports`, {
      key: reader.key,
      body: { from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' },
    });
    expectProblem(bad, 400, 'validation_failed');
    const unknown = await app.client.post(`/api/orgs/${org.orgId}/exports`, {
      key: reader.key,
      body: { ...range, limit: 10 },
    });
    expectProblem(unknown, 400, 'validation_failed');
    const format = await app.client.post(`/api/orgs/${org.orgId}/exports`, {
      key: reader.key,
      body: { format: 'json' },
    });
    expectProblem(format, 400, 'validation_failed');
  });

  it('is refused when expired, unknown or malformed, alike', async () => {
    const link = await makeLink(reader.key, range);
    await sql`update export_links set expires_at = now() - interval '1 second'
      where id = ${link.id}`.execute(app.kt.database.db);
    const expired = await app.client.get(link.url);
    expectProblem(expired, 404, 'not_found');
    expect((await status(link.id)).state).toBe('expired');
    const unknown = await app.client.get(`/api/exports/${'A'.repeat(43)}`);
    expectProblem(unknown, 404, 'not_found');
    expect(unknown.body.detail).toBe(expired.body.detail);
    expectProblem(await app.client.get('/api/exports/short'), 400, 'validation_failed');
  });

  it('has the power of its key when the download starts: revoked, scope or address lost', async () => {
    const admin = { key: org.adminKey };
    const doomed = await createKey(app.client, org, { scopes: ['events:read'] });
    const revokedLink = await makeLink(doomed.key, range);
    await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${doomed.id}`, admin);
    expectProblem(await app.client.get(revokedLink.url), 401, 'unauthenticated');
    expect(await status(revokedLink.id)).toMatchObject({
      state: 'failed',
      rows: 0,
      detail: expect.stringContaining('no longer valid'),
    });

    const narrowed = await createKey(app.client, org, { scopes: ['events:read', 'keys:read'] });
    const scopeLink = await makeLink(narrowed.key, range);
    const patch = (body: unknown) =>
      app.client.request('PATCH', `/api/orgs/${org.orgId}/api-keys/${narrowed.id}`, {
        ...admin,
        body,
      });
    expect((await patch({ scopes: ['keys:read'] })).status).toBe(200);
    expectProblem(await app.client.get(scopeLink.url), 403, 'insufficient_scope');

    expect((await patch({ scopes: ['events:read'] })).status).toBe(200);
    const ipLink = await makeLink(narrowed.key, range);
    expect((await patch({ allowed_ips: ['192.0.2.0/24'] })).status).toBe(200);
    expectProblem(await app.client.get(ipLink.url), 403, 'ip_not_allowed');
    // Spent though refused: a link is never tried twice.
    expect((await patch({ allowed_ips: [] })).status).toBe(200);
    expectProblem(await app.client.get(ipLink.url), 404, 'not_found');
  });

  it("keeps an export's progress to its org", async () => {
    const link = await makeLink(reader.key, range);
    const other = await createOrg(app.client, 'Other exports');
    const foreign = await app.client.get(`/api/orgs/${other.orgId}/exports/${link.id}`, {
      key: other.adminKey,
    });
    expectProblem(foreign, 404, 'not_found');
    const keysOnly = await createKey(app.client, org, { scopes: ['keys:read'] });
    const denied = await app.client.get(`/api/orgs/${org.orgId}/exports/${link.id}`, {
      key: keysOnly.key,
    });
    expectProblem(denied, 403, 'insufficient_scope');
  });

  it('refuses HEAD without spending the link, and marks every answer no-store and nosniff', async () => {
    const link = await makeLink(reader.key, range);
    const head = await fetch(`${app.baseUrl}${link.url}`, { method: 'HEAD' });
    expect(head.status).toBe(405);
    expect(head.headers.get('allow')).toBe('GET');
    expect(head.headers.get('cache-control')).toBe('no-store');
    const file = await app.client.get(link.url);
    expect(file.status).toBe(200);
    expect(file.headers.get('x-content-type-options')).toBe('nosniff');
    expect(file.headers.get('referrer-policy')).toBe('no-referrer');
    const gone = await app.client.get(link.url);
    expect(gone.headers.get('cache-control')).toBe('no-store');
  });

  it('records a download refused for want of an export slot as failed, with the reason', async () => {
    const slots = [app.kt.exportSlots.acquire(org.orgId), app.kt.exportSlots.acquire(org.orgId)];
    try {
      const link = await makeLink(reader.key, range);
      expectProblem(await app.client.get(link.url), 429, 'rate_limited');
      expect(await status(link.id)).toMatchObject({
        state: 'failed',
        detail: expect.stringMatching(/^rate_limited: this org already runs/),
      });
    } finally {
      for (const release of slots) if (typeof release === 'function') release();
    }
  });

  it('refuses the download of a key that expired since it made the link', async () => {
    const expiring = await createKey(app.client, org, { scopes: ['events:read'] });
    const link = await makeLink(expiring.key, range);
    await sql`update api_keys set expires_at = now() - interval '1 second'
      where id = ${expiring.id}`.execute(app.kt.database.db);
    expectProblem(await app.client.get(link.url), 401, 'unauthenticated');
  });

  it('reads an export whose server stopped writing its progress as failed', async () => {
    const link = await makeLink(reader.key, range);
    await sql`update export_links set state = 'streaming', started_at = now() - interval '1 minute',
      progress_at = now() - interval '20 seconds' where id = ${link.id}`.execute(
      app.kt.database.db,
    );
    expect(await status(link.id)).toMatchObject({
      state: 'failed',
      detail: expect.stringContaining('stopped before its end'),
    });
  });

  it('caps the links an org holds unused, and deletes links older than a day', async () => {
    const capped = await createOrg(app.client, 'Capped exports');
    const make = () =>
      app.client.post(`/api/orgs/${capped.orgId}/exports`, { key: capped.adminKey, body: {} });
    const made = [];
    for (let i = 0; i < 10; i++) made.push(await make());
    expect(made.every((r) => r.status === 201)).toBe(true);
    const refused = await make();
    expectProblem(refused, 429, 'rate_limited');
    expect(refused.headers.get('retry-after')).toBe('60');
    // Used links do not count.
    await app.client.get(made[0]?.body.url as string);
    expect((await make()).status).toBe(201);
    await sql`update export_links set created_at = now() - interval '25 hours'
      where org_id = ${capped.orgId}`.execute(app.kt.database.db);
    expect(await deleteOldExportLinks(app.kt.database.db)).toBeGreaterThanOrEqual(11);
    const old = await app.client.get(`/api/orgs/${capped.orgId}/exports/${made[1]?.body.id}`, {
      key: capped.adminKey,
    });
    expectProblem(old, 404, 'not_found');
  });

  it('gives one of two simultaneous downloads the file and the other 404', async () => {
    const link = await makeLink(reader.key, range);
    const both = await Promise.all([app.client.get(link.url), app.client.get(link.url)]);
    expect(both.map((r) => r.status).sort()).toEqual([200, 404]);
  });
});
