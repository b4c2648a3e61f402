/**
 * The org at a glance on the API Keys page, in a real headless Chromium against a real server,
 * worker and Postgres: the figures of today's row and the busiest keys as the API returns them,
 * the chart hidden from assistive technology with its table read instead, an axe scan.
 */
import { describe, expect, it } from 'vitest';
import {
  seriousViolations,
  shownNames,
  signInWith,
  watchConsole,
} from '../src/testing/admin-ui.ts';
import { chromiumAvailable, useBrowser } from '../src/testing/browser.ts';
import { createKey, createOrg } from '../src/testing/factories.ts';
import { waitFor } from '../src/testing/harness.ts';
import { useTrackingApp } from './admin-app.ts';

describe.skipIf(!chromiumAvailable())(
  'admin UI org at a glance and findings',
  { timeout: 120_000 },
  () => {
    const tracked = useTrackingApp();
    const browser = useBrowser();

    it('counts the findings in a closed disclosure, and lists a revoked key still tried', async () => {
      const { app } = tracked;
      const org = await createOrg(app.client, 'Findings UI');
      const leaked = await createKey(app.client, org, { name: 'leaked' });
      await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${leaked.id}`, {
        key: org.adminKey,
      });
      for (let i = 0; i < 2; i++) await app.client.get('/v1/demo/orders/1', { key: leaked.key });
      await waitFor(
        async () =>
          (await app.client.get(`/api/orgs/${org.orgId}/findings`, { key: org.adminKey })).body.data
            .length === 1,
        { timeoutMs: 20_000 },
      );
      const page = await browser.page();
      const errors = watchConsole(page);
      await signInWith(page, app.baseUrl, org.adminKey);
      await shownNames(page);
      const summary = page.getByText('Findings: 1 warning');
      await summary.waitFor();
      // Closed: the table's link is the page's only one named leaked.
      expect(await page.getByRole('link', { name: 'leaked' }).count()).toBe(1);
      await summary.click();
      const item = page.getByRole('listitem').filter({ hasText: 'still being tried' });
      expect(await item.getByRole('link').getAttribute('href')).toBe(`#/keys/${leaked.id}`);
      expect(await item.textContent()).toContain('2 denied attempts');
      expect(await seriousViolations(page)).toEqual([]);
      expect(errors).toEqual([]);
    });

    it('shows the org’s days and busiest keys as the API returns them', async () => {
      const { app } = tracked;
      const org = await createOrg(app.client, 'Glance UI');
      const busy = await createKey(app.client, org, { name: 'busy' });
      for (let i = 0; i < 6; i++) await app.client.get('/v1/demo/status/500', { key: busy.key });
      const api = async () =>
        (await app.client.get(`/api/orgs/${org.orgId}/usage/daily`, { key: org.adminKey })).body;
      await waitFor(
        async () => (await api()).busiest.some((k: { name: string }) => k.name === 'busy'),
        {
          timeoutMs: 20_000,
        },
      );
      const page = await browser.page();
      const errors = watchConsole(page);
      await signInWith(page, app.baseUrl, org.adminKey);
      await shownNames(page);
      // Closed at first: the keys table is the page's only table until it is opened.
      expect(await page.getByRole('table').count()).toBe(1);
      await page.getByText('The org at a glance').click();
      const glance = page.getByRole('region', { name: 'The org at a glance' });
      await glance.getByRole('heading', { name: 'Busiest keys, last 30 days' }).waitFor();
      const expected = await api();
      const rows = glance.getByRole('row').filter({ has: page.getByRole('rowheader') });
      expect(await rows.count()).toBe(30);
      // Newest first: today's row. Its 5xx are busy's six (the admin's own requests, tracked
      // too, keep adding to Requests while the test runs).
      const cells = await rows.first().getByRole('cell').allTextContents();
      expect(expected.series[29].errors_5xx).toBe(6);
      expect(cells[2]).toBe('6');
      expect(Number(cells[0])).toBeGreaterThanOrEqual(6);
      const link = glance.getByRole('listitem').filter({ hasText: 'busy' }).getByRole('link');
      expect(await link.getAttribute('href')).toBe(`#/keys/${busy.id}`);
      expect(await glance.locator('.chart').getAttribute('aria-hidden')).toBe('true');
      expect(await seriousViolations(page)).toEqual([]);
      expect(errors).toEqual([]);
    });
  },
);
