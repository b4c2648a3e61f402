/**
 * The key page in a real headless Chromium against a real server, worker and Postgres: its
 * trend table, figures, top endpoints and recent events equal the API's for the same window;
 * the window picker asks for hours or days; a revoked key still being tried is a finding; refusals
 * (denied, and limited by rate, quota or IP) have their figures, series and labels; the page passes
 * an axe scan and runs under the CSP without a console error.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seriousViolations, signInWith, watchConsole } from '../src/testing/admin-ui.ts';
import { chromiumAvailable, useBrowser } from '../src/testing/browser.ts';
import {
  createKey,
  createOrg,
  reportEvents,
  type TestKey,
  type TestOrg,
} from '../src/testing/factories.ts';
import { useTestDatabase, waitFor, type TestApp } from '../src/testing/harness.ts';
import { formatNumber } from '../src/ui/format.ts';
import { bucketLabel, formatLatency, formatRate } from '../src/ui/key/window.ts';
import type { Worker } from '../workers/main.ts';
import { startTrackingApp } from './admin-app.ts';

type Usage = {
  window: Record<string, number | null>;
  series: {
    start: string;
    requests: number;
    errors_4xx: number;
    errors_5xx: number;
    denied: number;
    limited: number;
    p95_latency_ms: number | null;
  }[];
  top_endpoints: {
    method: string;
    route: string;
    requests: number;
    errors: number;
    avg_latency_ms: number | null;
  }[];
  recent_events: { event_id: string; status: number; outcome: string }[];
  today: { requests: number };
  this_month: { requests: number };
};

describe.skipIf(!chromiumAvailable())('admin UI key page', { timeout: 120_000 }, () => {
  const dbUrl = useTestDatabase();
  const browser = useBrowser();
  let app: TestApp;
  let worker: Worker;
  let org: TestOrg;
  let busy: TestKey;
  let errors: string[];

  const usageOf = async (keyId: string, query = ''): Promise<Usage> =>
    (
      await app.client.get(`/api/orgs/${org.orgId}/api-keys/${keyId}/usage${query}`, {
        key: org.adminKey,
      })
    ).body as Usage;
  const waitForRequests = (keyId: string, n: number) =>
    waitFor(async () => (await usageOf(keyId, '?granularity=hour')).window.requests === n);

  beforeAll(async () => {
    ({ app, worker } = await startTrackingApp(dbUrl()));
    org = await createOrg(app.client, 'Key page');
    busy = await createKey(app.client, org, { name: 'busy', scopes: ['orders:read'] });
    // Real requests through the demo routes: 6 successes on two routes, two 404s, one 503.
    for (const path of ['/v1/demo/orders/1', '/v1/demo/orders/2', '/v1/demo/orders/3'])
      await app.client.get(path, { key: busy.key });
    for (const code of [200, 200, 200, 404, 404, 503])
      await app.client.get(`/v1/demo/status/${code}`, { key: busy.key });
    await waitForRequests(busy.id, 9);
  }, 90_000);
  afterAll(async () => {
    await worker?.stop();
    await app?.close();
  });

  async function openKey(keyId: string): Promise<Page> {
    const page = await browser.page();
    errors = watchConsole(page);
    await signInWith(page, app.baseUrl, org.adminKey);
    await page.goto(`${app.baseUrl}/admin/#/keys/${keyId}`);
    await page.locator('.usage > [aria-busy="false"]').waitFor();
    return page;
  }

  /** Picks a window and returns the query string the page sent for it. */
  async function pickWindow(page: Page, label: string): Promise<string> {
    const response = page.waitForResponse((r) => /\/usage\?/.test(r.url()));
    await page.getByRole('radio', { name: label }).check();
    const url = new URL((await response).url());
    await page.locator('.usage > [aria-busy="false"]').waitFor();
    return url.search;
  }

  const rowsOf = (page: Page, region: string) =>
    page
      .getByRole('region', { name: region })
      .locator('tbody tr')
      .evaluateAll((trs) =>
        trs.map((tr) => [...tr.children].map((c) => (c.textContent ?? '').trim())),
      );

  it("shows the API's figures for the window: trend table, totals, top endpoints, events", async () => {
    const page = await openKey(busy.id);
    const search = await pickWindow(page, '24 hours');
    const params = new URLSearchParams(search);
    expect(params.get('granularity')).toBe('hour');
    expect(Date.parse(params.get('to')!) - Date.parse(params.get('from')!)).toBe(24 * 3_600_000);
    // The API, asked independently for the same window.
    const api = await usageOf(busy.id, search);
    expect(api.series).toHaveLength(24);

    const trend = await rowsOf(page, 'Trend figures');
    const expected = [...api.series]
      .reverse()
      .map((s, i) => [
        bucketLabel(s.start, 'hour', 'en-US', 'UTC') + (i === 0 ? ' (so far)' : ''),
        formatNumber(s.requests, 'en-US'),
        formatNumber(s.errors_4xx, 'en-US'),
        formatNumber(s.errors_5xx, 'en-US'),
        formatNumber(s.denied, 'en-US'),
        formatNumber(s.limited, 'en-US'),
        formatLatency(s.p95_latency_ms, 'en-US'),
      ]);
    expect(trend).toEqual(expected);
    // Summed, not read off the current hour: the requests may straddle an hour boundary.
    const sum = (column: number) => trend.reduce((a, row) => a + Number(row[column]), 0);
    expect([sum(1), sum(2), sum(3), sum(4), sum(5)]).toEqual([9, 2, 1, 0, 0]);

    const figure = (label: string) =>
      page.locator('.usage dl dt', { hasText: label }).locator('xpath=following-sibling::dd[1]');
    expect(await figure('Requests, 24 hours').textContent()).toBe('9');
    expect(await figure('Error rate').textContent()).toBe(
      formatRate(api.window.error_rate!, 'en-US'),
    );
    expect(api.window.error_rate).toBeCloseTo(3 / 9, 3);
    expect(await figure('p50 latency').textContent()).toBe(
      formatLatency(api.window.p50_latency_ms ?? null, 'en-US'),
    );
    expect(await figure('p95 latency').textContent()).toBe(
      formatLatency(api.window.p95_latency_ms ?? null, 'en-US'),
    );
    expect(await figure('Today (UTC)').textContent()).toBe(String(api.today.requests));

    const endpoints = await rowsOf(page, 'Top endpoints');
    expect(endpoints).toEqual(
      api.top_endpoints.map((e) => [
        `${e.method} ${e.route}`,
        formatNumber(e.requests, 'en-US'),
        formatNumber(e.errors, 'en-US'),
        formatRate(e.requests > 0 ? e.errors / e.requests : null, 'en-US'),
        formatLatency(e.avg_latency_ms, 'en-US'),
      ]),
    );
    expect(endpoints.map((e) => e[0])).toEqual(
      expect.arrayContaining(['GET /v1/demo/orders/:id', 'GET /v1/demo/status/:code']),
    );
    const events = await rowsOf(page, 'Recent events');
    expect(events.map((e) => e[2])).toEqual(api.recent_events.map((e) => String(e.status)));
    expect(errors).toEqual([]);
  });

  it('asks for days in the day windows and shows one row per day', async () => {
    const page = await openKey(busy.id);
    for (const [label, days] of [
      ['7 days', 7],
      ['90 days', 90],
    ] as const) {
      const params = new URLSearchParams(await pickWindow(page, label));
      expect(params.get('granularity')).toBe('day');
      expect(
        await page.getByRole('region', { name: 'Trend figures' }).locator('tbody tr').count(),
      ).toBe(days);
    }
    expect(errors).toEqual([]);
  });

  it('shows a revoked key still being tried as a finding', async () => {
    const doomed = await createKey(app.client, org, { name: 'leaked', scopes: ['orders:read'] });
    expect((await app.client.get('/v1/demo/orders/1', { key: doomed.key })).status).toBe(200);
    await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${doomed.id}?reason=leaked`, {
      key: org.adminKey,
    });
    for (let i = 0; i < 3; i++)
      expect((await app.client.get('/v1/demo/orders/1', { key: doomed.key })).status).toBe(401);
    await expect
      .poll(async () => (await usageOf(doomed.id)).recent_events.length, { timeout: 20_000 })
      .toBe(4);
    const page = await openKey(doomed.id);
    const finding = page.locator('.finding-warning');
    // "just now" lasts 45 s: a slow run may read "1 minute ago".
    expect(await finding.textContent()).toMatch(
      /A revoked key is still being tried: last denied attempt (just now|\d+ minutes? ago), 3 denied attempts in all\./,
    );
    // The denied attempts stand out in the recent events too.
    const outcomes = (await rowsOf(page, 'Recent events')).map((e) => e.at(-1));
    expect(outcomes).toEqual(['Denied: revoked', 'Denied: revoked', 'Denied: revoked', 'OK']);
    // A revoked key cannot be rotated or revoked again: no such buttons.
    expect(await page.getByRole('button', { name: 'Rotate' }).count()).toBe(0);
    expect(errors).toEqual([]);
  });

  it('shows refusals apart: Denied and Limited figures, their trend series, outcome labels', async () => {
    const capped = await createKey(app.client, org, { name: 'capped', scopes: ['orders:read'] });
    // Oldest first, a second apart, so the recent events read in a known order.
    const start = Date.now() - 60_000;
    const events = (
      [
        ['success', 200],
        ['success', 200],
        ['success', 200],
        ['insufficient_scope', 403],
        ['rate_limited', 429],
        ['rate_limited', 429],
        ['quota_exceeded', 429],
        ['ip_denied', 403],
      ] as const
    ).map(([outcome, status], i) => ({
      key_id: capped.id,
      occurred_at: new Date(start + i * 1000).toISOString(),
      outcome,
      status,
    }));
    await reportEvents(app.client, org, org.adminKey, events);
    await expect
      .poll(
        async () => {
          const w = (await usageOf(capped.id, '?granularity=hour')).window;
          return [w.requests, w.denied, w.limited];
        },
        { timeout: 20_000 },
      )
      .toEqual([3, 1, 4]);

    const page = await openKey(capped.id);
    const figure = (label: string) =>
      page
        .locator('.usage dl dt', { hasText: new RegExp(`^${label}$`) })
        .locator('xpath=following-sibling::dd[1]');
    expect(await figure('Denied').textContent()).toBe('1');
    expect(await figure('Limited').textContent()).toBe('4');
    // Refusals are not requests: the error rate is over the 3 successes only.
    expect(await figure('Error rate').textContent()).toBe(formatRate(0, 'en-US'));

    // The chart's legend and its table both carry the refusals' series.
    const legend = await page.locator('.trend .legend li').allTextContents();
    expect(legend.map((l) => l.trim())).toEqual([
      'Requests (left axis)',
      '4xx (right axis)',
      '5xx (right axis)',
      'Denied (right axis)',
      'Limited (right axis)',
    ]);
    const trendRegion = page.getByRole('region', { name: 'Trend figures' });
    expect(await trendRegion.getByRole('columnheader').allTextContents()).toEqual([
      'Day (UTC)',
      'Requests',
      '4xx',
      '5xx',
      'Denied',
      'Limited',
      'p95 latency',
    ]);
    const trend = await rowsOf(page, 'Trend figures');
    const sum = (column: number) => trend.reduce((a, row) => a + Number(row[column]), 0);
    // Summed: the events may straddle midnight UTC.
    expect([sum(1), sum(4), sum(5)]).toEqual([3, 1, 4]);

    const outcomes = (await rowsOf(page, 'Recent events')).map((e) => e.at(-1));
    expect(outcomes).toEqual([
      'Limited: IP',
      'Limited: quota',
      'Limited: rate',
      'Limited: rate',
      'Denied: scope',
      'OK',
      'OK',
      'OK',
    ]);
    const recent = page.getByRole('region', { name: 'Recent events' });
    expect(await recent.locator('.badge-limited').count()).toBe(4);
    expect(await recent.locator('.badge-denied').count()).toBe(1);
    expect(await seriousViolations(page)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('shows the fields to a key without usage:read, and the 403 naming the scope', async () => {
    const reader = await createKey(app.client, org, { name: 'reader', scopes: ['keys:read'] });
    const page = await browser.page();
    errors = watchConsole(page);
    await signInWith(page, app.baseUrl, reader.key);
    await page.goto(`${app.baseUrl}/admin/#/keys/${busy.id}`);
    await page.getByRole('heading', { name: 'busy', level: 1 }).waitFor();
    const usage = page.locator('.usage [role="alert"]');
    await usage.waitFor();
    expect(await usage.textContent()).toContain('usage:read');
    // The browser logs the refused request itself; nothing else may fail.
    expect(errors.filter((e) => !e.includes('403'))).toEqual([]);
  });

  it('says so when a key has no usage, and passes an axe scan with data and without', async () => {
    const quiet = await createKey(app.client, org, { name: 'quiet' });
    const page = await openKey(quiet.id);
    await page.getByText('No requests in the last 30 days.').waitFor();
    await page.getByText('No events yet.').waitFor();
    expect(await seriousViolations(page)).toEqual([]);
    const used = await openKey(busy.id);
    await used.getByRole('region', { name: 'Trend figures' }).waitFor();
    expect(await seriousViolations(used)).toEqual([]);
    expect(errors).toEqual([]);
  });
});
