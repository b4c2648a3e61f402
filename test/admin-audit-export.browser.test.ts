/**
 * The Audit and Export pages in a real headless Chromium against a real server and Postgres:
 * a revocation in the audit trail as the API lists it, the missing scope of a key without
 * audit:read, a CSV export whose rows equal the API's CSV of the same range, an export whose
 * range ends when it starts, a million-row export that leaves the page's heap flat, a refused
 * range, an axe scan of both pages, and no console error under the CSP.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { parse } from 'csv-parse/sync';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seriousViolations, signInWith, watchConsole } from '../src/testing/admin-ui.ts';
import { startTrackingApp } from './admin-app.ts';
import { chromiumAvailable, useBrowser } from '../src/testing/browser.ts';
import {
  createKey,
  createOrg,
  insertRawEvents,
  reportEvents,
  type TestOrg,
} from '../src/testing/factories.ts';
import { ensurePartitionsAhead } from '../src/usage/usage.partitions.ts';
import { useTestDatabase, waitFor, type TestApp } from '../src/testing/harness.ts';
import type { Worker } from '../workers/main.ts';

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

const rowsOf = (csv: string): string[][] => parse(csv);

/** A datetime-local value in UTC (the browser context's time zone), to the minute. */
const localInput = (ms: number) => new Date(ms).toISOString().slice(0, 16);

describe.skipIf(!chromiumAvailable())('admin UI audit and export', { timeout: 120_000 }, () => {
  const dbUrl = useTestDatabase();
  const browser = useBrowser();
  let app: TestApp;
  let worker: Worker;
  let org: TestOrg;
  let errors: string[];
  let reader: { key: string; id: string };
  // A range wholly in the past: requests the test makes later never fall into it.
  const from = localInput(Date.now() - 3 * HOUR_MS);
  const to = localInput(Date.now() - HOUR_MS);
  const fromIso = `${from}:00.000Z`;
  const toIso = `${to}:00.000Z`;

  beforeAll(async () => {
    ({ app, worker } = await startTrackingApp(dbUrl()));
    org = await createOrg(app.client, 'Audit');
    reader = await createKey(app.client, org, { name: 'keys reader', scopes: ['keys:read'] });
    const at = (minutes: number) =>
      new Date(Date.parse(fromIso) + minutes * MINUTE_MS).toISOString();
    await reportEvents(app.client, org, org.adminKey, [
      { key_id: reader.id, occurred_at: at(10), route: '/v1/a', user_agent: 'ua, "quoted"' },
      { key_id: reader.id, occurred_at: at(20), status: 404 },
      { key_id: org.adminKeyId, occurred_at: at(30) },
    ]);
    await waitFor(async () => (await apiCsv()).length === 4 || null, { timeoutMs: 20_000 });
  }, 90_000);
  afterAll(async () => {
    await worker?.stop();
    await app?.close();
  });

  async function apiCsv(): Promise<string[][]> {
    const query = new URLSearchParams({ from: fromIso, to: toIso });
    const res = await app.client.get(`/api/orgs/${org.orgId}/usage-events?${query.toString()}`, {
      key: org.adminKey,
      headers: { accept: 'text/csv' },
    });
    expect(res.status).toBe(200);
    return rowsOf(res.text);
  }

  async function signIn(key = org.adminKey): Promise<Page> {
    const page = await browser.page();
    errors = watchConsole(page);
    await signInWith(page, app.baseUrl, key);
    return page;
  }

  it('lists a revocation made through the API as GET audit-events does', async () => {
    const doomed = await createKey(app.client, org, { name: 'doomed' });
    const revoked = await app.client.delete(
      `/api/orgs/${org.orgId}/api-keys/${doomed.id}?reason=leaked`,
      { key: org.adminKey },
    );
    expect(revoked.status).toBe(200);
    const api = await app.client.get(`/api/orgs/${org.orgId}/audit-events`, {
      key: org.adminKey,
    });
    const newest = api.body.data[0];
    expect(newest).toMatchObject({ action: 'key.revoked', target: { id: doomed.id } });

    const page = await signIn();
    await page.getByRole('link', { name: 'Audit', exact: true }).click();
    await page.getByRole('heading', { name: 'Audit', level: 1 }).waitFor();
    await page.locator('table[aria-busy="false"]').waitFor();
    const headers = await page.getByRole('columnheader').allTextContents();
    expect(headers).toEqual(['Time', 'Actor', 'Action', 'Target', 'Details']);
    const rows = page.getByRole('row').filter({ has: page.getByRole('cell') });
    expect(await rows.count()).toBe(api.body.data.length);
    const first = rows.first();
    await expect.poll(() => first.getByRole('cell').nth(2).textContent()).toBe('key.revoked');
    // Keys are named (from the key list) and linked to their page; the id is on hover.
    const target = first.getByRole('cell').nth(3).getByRole('link');
    await expect.poll(() => target.textContent()).toMatch(/^doomed sk_live_\w+…$/);
    expect(await target.getAttribute('href')).toBe(`#/keys/${doomed.id}`);
    expect(await target.getAttribute('title')).toBe(`API key ${doomed.id}`);
    const actor = first.getByRole('cell').nth(1).getByRole('link');
    expect(await actor.getAttribute('href')).toBe(`#/keys/${org.adminKeyId}`);
    expect(await first.getByRole('cell').nth(4).textContent()).toContain('reason: leaked');
    expect(await first.locator('time').getAttribute('datetime')).toBe(newest.occurred_at);
    expect(await seriousViolations(page)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('tells a key without audit:read which scope it lacks', async () => {
    const page = await signIn(reader.key);
    await page.getByRole('link', { name: 'Audit', exact: true }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('audit:read');
    expect(await page.getByRole('table').count()).toBe(0);
  });

  it('exports the CSV of a range, row for row as the API returns it', async () => {
    const page = await signIn();
    await page.getByRole('link', { name: 'Export', exact: true }).click();
    await page.getByRole('heading', { name: 'Export', level: 1 }).waitFor();
    await page.getByRole('option', { name: 'keys reader' }).waitFor({ state: 'attached' });
    await page.getByLabel('From').fill(from);
    await page.getByLabel('To').fill(to);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    // The server names the file (the page only opens the export's single-use link).
    const stamp = (iso: string) => iso.slice(0, 19).replace(/[-:]/g, '');
    expect(download.suggestedFilename()).toBe(`usage-events-${stamp(fromIso)}-${stamp(toIso)}.csv`);
    // The page opened a single-use link: the key is in no URL (SPEC §7).
    expect(download.url()).toMatch(/\/api\/exports\/[\w-]{43}$/);
    expect(download.url()).not.toContain(org.adminKey);
    const file = await readFile(await download.path(), 'utf8');
    const expected = await apiCsv();
    expect(rowsOf(file)).toEqual(expected);
    expect(expected).toHaveLength(4);
    await page.getByRole('status').filter({ hasText: 'Downloaded 3 rows' }).waitFor();

    // One key only: its two events.
    await page.getByLabel('Key').selectOption({ label: 'keys reader' });
    const [one] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    const rows = rowsOf(await readFile(await one.path(), 'utf8'));
    expect(rows).toHaveLength(3);
    await page.getByRole('status').filter({ hasText: 'Downloaded 2 rows' }).waitFor();
    expect(await seriousViolations(page)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('exports up to the moment it starts when To is left empty', async () => {
    // Used seconds ago (the bug this replaces cut the range at the page's load, to the minute).
    const eventId = crypto.randomUUID();
    const occurredAt = new Date(Date.now() - 2_000).toISOString();
    await reportEvents(app.client, org, org.adminKey, [
      { event_id: eventId, key_id: reader.id, occurred_at: occurredAt, route: '/v1/fresh' },
    ]);
    await waitFor(
      async () => {
        const query = new URLSearchParams({ from: new Date(Date.now() - HOUR_MS).toISOString() });
        const res = await app.client.get(
          `/api/orgs/${org.orgId}/usage-events?${query.toString()}`,
          {
            key: org.adminKey,
            headers: { accept: 'text/csv' },
          },
        );
        return res.text.includes(eventId);
      },
      { timeoutMs: 20_000 },
    );
    const page = await signIn();
    await page.getByRole('link', { name: 'Export', exact: true }).click();
    await page.getByLabel('From').fill(localInput(Date.now() - 10 * MINUTE_MS));
    expect(await page.getByLabel('To').inputValue()).toBe('');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    const file = await readFile(await download.path(), 'utf8');
    expect(file).toContain(eventId);
    await page
      .getByRole('status')
      .filter({ hasText: /^Downloaded \d+ rows? \(/ })
      .waitFor();
    expect(errors).toEqual([]);
  });

  it(
    'saves a million-row export as it arrives: the page heap stays flat',
    { timeout: 300_000 },
    async () => {
      const ROWS = 1_000_000;
      const bulk = await createOrg(app.client, 'Bulk export');
      const used = await createKey(app.client, bulk, { name: 'busy' });
      const from = Date.now() - 5 * MINUTE_MS;
      await ensurePartitionsAhead(app.kt.database.db, new Date(from), 2);
      // 10 events a millisecond: 100 s of a busy key, ~150 bytes a row in the CSV.
      await insertRawEvents(app.kt.backgroundDatabase.db, {
        orgId: bulk.orgId,
        keyIds: [used.id],
        count: ROWS,
        from: new Date(from),
        userAgentBytes: 20,
      });
      const page = await signIn(bulk.adminKey);
      await page.getByRole('link', { name: 'Export', exact: true }).click();
      await page.getByLabel('From').fill(localInput(from - MINUTE_MS));
      // The busy key only: the admin key's own requests of this test are tracked too.
      await page.getByRole('option', { name: 'busy' }).waitFor({ state: 'attached' });
      await page.getByLabel('Key').selectOption({ label: 'busy' });
      const cdp = await page.context().newCDPSession(page);
      const heap = async () => {
        const usage = (await cdp.send('Runtime.getHeapUsage')) as { usedSize: number };
        return usage.usedSize;
      };
      await cdp.send('HeapProfiler.collectGarbage');
      const before = await heap();
      let peak = before;
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Export CSV' }).click(),
      ]);
      const done = page.getByRole('status').filter({ hasText: 'Downloaded 1,000,000 rows' });
      // Sampled at every check until the page says it is done.
      await waitFor(
        async () => {
          peak = Math.max(peak, await heap());
          return done.isVisible();
        },
        { timeoutMs: 240_000, intervalMs: 200 },
      );
      const path = await download.path();
      let lines = 0;
      for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
      }
      expect(lines).toBe(ROWS + 1);
      const size = (await stat(path)).size;
      // The file is ~100+ MB; the page never held more than a few MB of it at once.
      expect(size).toBeGreaterThan(100_000_000);
      console.info(
        `1M-row export: ${(size / 1e6).toFixed(0)} MB file, page heap ${(before / 1e6).toFixed(1)} MB before, peak ${(peak / 1e6).toFixed(1)} MB`,
      );
      expect(peak - before).toBeLessThan(8_000_000);
      expect(errors).toEqual([]);
    },
  );

  it('shows the API problem of a range that ends before it starts', async () => {
    const page = await signIn();
    await page.getByRole('link', { name: 'Export', exact: true }).click();
    await page.getByLabel('From').fill(to);
    await page.getByLabel('To').fill(from);
    await page.getByRole('button', { name: 'Export CSV' }).click();
    const query = new URLSearchParams({ from: toIso, to: fromIso });
    const refused = await app.client.get(
      `/api/orgs/${org.orgId}/usage-events?${query.toString()}`,
      {
        key: org.adminKey,
        headers: { accept: 'text/csv' },
      },
    );
    expect(refused.status).toBe(400);
    const alert = page.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toContain(refused.body.detail);
    // A 400 is not a console error of the app's (the browser logs the failed fetch itself).
    expect(errors.filter((e) => !e.includes('400'))).toEqual([]);
  });
});
