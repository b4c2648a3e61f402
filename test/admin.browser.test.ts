/**
 * The admin UI (SPEC §7) in a real headless Chromium against a real server, worker and
 * Postgres: sign-in, the API Keys table (relative "Last used", the "Limited" count, sorting, the
 * dormant filter, cursor paging at 1,000 keys), the error states, where the key goes (and does not), the CSP,
 * and an axe-core scan of each page. Locators use roles and accessible names: they are the
 * page's contract.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Worker } from '../workers/main.ts';
import { startTrackingApp } from './admin-app.ts';
import { chromiumAvailable, useBrowser } from '../src/testing/browser.ts';
import { seriousViolations, shownNames, tabTo, watchConsole } from '../src/testing/admin-ui.ts';
import {
  createKey,
  createOrg,
  insertBulkKeys,
  reportEvents,
  type TestKey,
  type TestOrg,
} from '../src/testing/factories.ts';
import { useTestDatabase, waitFor, type TestApp } from '../src/testing/harness.ts';
import { exactTime } from '../src/ui/format.ts';

const DAY_MS = 86_400_000;

describe.skipIf(!chromiumAvailable())('admin UI in Chromium', { timeout: 120_000 }, () => {
  const dbUrl = useTestDatabase();
  const browser = useBrowser();
  let app: TestApp;
  let worker: Worker;
  let org: TestOrg;
  const keys = {} as Record<'never' | 'busy' | 'old' | 'revoked' | 'narrow', TestKey>;

  const api = async (path: string, key = org.adminKey) => {
    const res = await app.client.get(path, { key });
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${res.text}`);
    return res.body;
  };
  const usage = (query: string, o = org) =>
    api(`/api/orgs/${o.orgId}/api-keys/usage?${query}`, o.adminKey);

  beforeAll(async () => {
    ({ app, worker } = await startTrackingApp(dbUrl()));
    org = await createOrg(app.client, 'Browser');
    const make = (name: string, scopes = ['orders:read']) =>
      createKey(app.client, org, { name, scopes });
    keys.never = await make('never used');
    keys.busy = await make('busy', ['orders:read', 'orders:write']);
    keys.old = await make('old');
    keys.revoked = await make('revoked');
    keys.narrow = await make('keys reader', ['keys:read']);
    for (let i = 0; i < 3; i++) {
      const res = await app.client.get('/v1/demo/orders/1', { key: keys.busy.key });
      expect(res.status).toBe(200);
    }
    await app.client.get('/v1/demo/orders/1', { key: keys.revoked.key });
    await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${keys.revoked.id}`, {
      key: org.adminKey,
    });
    // "old" was last used 3 days ago: reported events may be up to 7 days old.
    const threeDaysAgo = new Date(Date.now() - 3 * DAY_MS - 3_600_000).toISOString();
    // "busy" was also refused: once for a missing scope, 4 times by its limits (SPEC §11).
    const aMinuteAgo = new Date(Date.now() - 60_000).toISOString();
    const refusals = [
      ['insufficient_scope', 403],
      ['rate_limited', 429],
      ['rate_limited', 429],
      ['quota_exceeded', 429],
      ['ip_denied', 403],
    ] as const;
    await reportEvents(app.client, org, org.adminKey, [
      { key_id: keys.old.id, occurred_at: threeDaysAgo },
      { key_id: keys.old.id, occurred_at: threeDaysAgo },
      ...refusals.map(([outcome, status]) => ({
        key_id: keys.busy.id,
        occurred_at: aMinuteAgo,
        outcome,
        status,
      })),
    ]);
    await waitFor(
      async () => {
        const rows: any[] = (await usage('limit=50')).data;
        const row = (k: TestKey) => rows.find((r) => r.key_id === k.id);
        const count = (k: TestKey) => row(k)?.request_count;
        return (
          count(keys.busy) === 3 &&
          row(keys.busy)?.limited_count === 4 &&
          row(keys.busy)?.denied_count === 1 &&
          count(keys.old) === 2 &&
          count(keys.revoked) === 1
        );
      },
      { timeoutMs: 20_000 },
    );
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
  });

  async function signIn(key = org.adminKey, options: { keep?: boolean } = {}): Promise<Page> {
    const page = await browser.page();
    await page.goto(`${app.baseUrl}/admin/`);
    await page.getByLabel('API key', { exact: true }).fill(key);
    if (options.keep) await page.getByRole('checkbox', { name: /Keep me signed in/ }).check();
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
    return page;
  }

  const names = (body: any): string[] => body.data.map((r: any) => r.name);

  it('serves /admin with a strict Content-Security-Policy and the security headers', async () => {
    const res = await fetch(`${app.baseUrl}/admin`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('signs in with a pasted key and runs under the CSP without a console error', async () => {
    const page = await browser.page();
    const errors = watchConsole(page);
    page.on('response', (r) => {
      if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`);
    });
    await page.goto(`${app.baseUrl}/admin/`);
    const field = page.getByLabel('API key', { exact: true });
    expect(await field.getAttribute('type')).toBe('password');
    expect(await field.getAttribute('autocomplete')).toBe('off');
    expect(await page.getByRole('checkbox', { name: /Keep me signed in/ }).isChecked()).toBe(false);
    await field.fill(org.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    expect(await page.getByText('Browser', { exact: true }).count()).toBe(1);
    await shownNames(page);
    expect(errors).toEqual([]);
  });

  it('keeps the key out of the DOM, the URL and storage (a masked prefix at most)', async () => {
    const page = await signIn();
    await shownNames(page);
    expect(await page.content()).not.toContain(org.adminKey);
    expect(await page.content()).toContain(org.adminKey.slice(0, 16));
    expect(page.url()).not.toContain(org.adminKey);
    expect(await page.evaluate('window.sessionStorage.length + window.localStorage.length')).toBe(
      0,
    );
    expect(await page.context().cookies()).toEqual([]);
  });

  it('keeps the key in sessionStorage only when asked; a reload resumes; Sign out clears it', async () => {
    const page = await signIn(org.adminKey, { keep: true });
    expect(await page.evaluate('Object.values(sessionStorage)')).toEqual([org.adminKey]);
    expect(await page.evaluate('localStorage.length')).toBe(0);
    await page.reload();
    await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key', { exact: true }).waitFor();
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    expect(await page.getByRole('alert').first().textContent()).toContain('Signed out');
    await page.reload();
    await page.getByLabel('API key', { exact: true }).waitFor();
  });

  it('shows the table headers, a never-used key as "—" and used keys as relative times', async () => {
    const page = await signIn();
    await shownNames(page);
    const shown = (await usage('limit=50')).data.length;
    expect(await page.getByRole('status').textContent()).toBe(`${shown} keys on page 1`);
    const headers = await page.getByRole('columnheader').allTextContents();
    expect(headers.map((h) => h.replace(/[▲▼↕]/g, ''))).toEqual([
      'Select',
      'Name',
      'Prefix',
      'Environment',
      'Scopes',
      'Created',
      'Last used',
      'Requests',
      'Limited',
      'Last IP',
      'Status',
    ]);
    for (const name of ['Name', 'Last used', 'Requests', 'Created'])
      await page.getByRole('columnheader', { name, exact: true }).getByRole('button').waitFor();
    expect(
      await page.getByRole('columnheader', { name: 'Last used' }).getAttribute('aria-sort'),
    ).toBe('descending');
    const row = (name: string) =>
      page.getByRole('row').filter({ has: page.getByRole('link', { name, exact: true }) });
    const cell = (name: string, header: string) =>
      row(name)
        .locator('th, td')
        .nth(headers.findIndex((h) => h.replace(/[▲▼↕]/g, '') === header));
    const lastUsed = (name: string) => cell(name, 'Last used');

    expect(await lastUsed('never used').textContent()).toBe('—');
    expect(await lastUsed('never used').locator('time').count()).toBe(0);

    const rows: any[] = (await usage('limit=50')).data;
    const api = (k: TestKey) => rows.find((r) => r.key_id === k.id);
    const busyTime = lastUsed('busy').locator('time');
    expect(await busyTime.getAttribute('datetime')).toBe(api(keys.busy).last_used_at);
    expect(await busyTime.getAttribute('title')).toBe(
      exactTime(api(keys.busy).last_used_at, 'en-US', 'UTC'),
    );
    expect(await busyTime.textContent()).toMatch(/^(just now|\d+ minutes? ago)$/);
    const oldTime = lastUsed('old').locator('time');
    expect(await oldTime.textContent()).toBe('3 days ago');
    expect(await oldTime.getAttribute('datetime')).toBe(api(keys.old).last_used_at);
    expect(await cell('busy', 'Requests').textContent()).toBe('3');
    // Refusals by a limit are counted apart from requests and from the one denied attempt.
    expect(await cell('busy', 'Limited').textContent()).toBe('4');
    expect(api(keys.busy).limited_count).toBe(4);
    expect(await cell('never used', 'Limited').textContent()).toBe('0');
    expect(await page.getByRole('columnheader', { name: 'Limited', exact: true }).count()).toBe(1);
    expect(await cell('busy', 'Scopes').textContent()).toBe('orders:readorders:write');
    expect(await row('revoked').getByText('Revoked', { exact: true }).count()).toBe(1);
    // The default order is the API's: last used, newest first, never-used keys last.
    expect(await shownNames(page)).toEqual(names(await usage('limit=50')));
    const lastUsedTexts = await page.locator('tbody td:nth-of-type(6)').allTextContents();
    const firstNever = lastUsedTexts.indexOf('—');
    expect(firstNever).toBeGreaterThan(0);
    expect(lastUsedTexts.slice(firstNever).every((t) => t === '—')).toBe(true);
  });

  it('keeps the wider table usable on a narrow screen: it scrolls in its own region', async () => {
    const page = await signIn();
    await page.setViewportSize({ width: 360, height: 720 });
    await shownNames(page);
    const region = page.getByRole('region', { name: 'Table of keys' });
    const [scrollWidth, clientWidth] = await region.evaluate((el) => [
      el.scrollWidth,
      el.clientWidth,
    ]);
    // The table is wider than the screen, its region scrolls it, and the page itself does not.
    expect(scrollWidth).toBeGreaterThan(clientWidth);
    expect(clientWidth).toBeLessThanOrEqual(360);
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(360);
    // Scrolled to its far end, the Limited and Status columns are on screen.
    await region.evaluate((el) => el.scrollTo({ left: el.scrollWidth }));
    for (const name of ['Limited', 'Status']) {
      const box = await page.getByRole('columnheader', { name, exact: true }).boundingBox();
      expect(box?.x).toBeGreaterThanOrEqual(0);
      expect(box && box.x + box.width).toBeLessThanOrEqual(360);
    }
  });

  it('sorts by Requests through the API, and a second click flips the order', async () => {
    const page = await signIn();
    await shownNames(page);
    const header = page.getByRole('columnheader', { name: 'Requests' });
    await header.getByRole('button').click();
    await expect.poll(() => header.getAttribute('aria-sort')).toBe('descending');
    // The admin key's own count grows with every call (the page's and this test's), and it
    // stays the most used: the order of names is stable while the counts move.
    await expect
      .poll(async () => (await shownNames(page)).join(' | '))
      .toBe(names(await usage('sort=request_count&order=desc')).join(' | '));
    expect((await shownNames(page)).slice(1, 4)).toEqual(['busy', 'old', 'revoked']);
    await header.getByRole('button').click();
    await expect.poll(() => header.getAttribute('aria-sort')).toBe('ascending');
    await expect
      .poll(async () => (await shownNames(page)).join(' | '))
      .toBe(names(await usage('sort=request_count&order=asc')).join(' | '));
    expect(
      await page.getByRole('columnheader', { name: 'Last used' }).getAttribute('aria-sort'),
    ).toBe('none');
  });

  it('filters "Dormant only" and by the threshold in days as the API does', async () => {
    const page = await signIn();
    await shownNames(page);
    await page.getByRole('checkbox', { name: 'Dormant only' }).check();
    // Nothing is dormant at the default 30 days: the empty state.
    expect(names(await usage('dormant=true'))).toEqual([]);
    await page.getByText('No keys match').waitFor();
    const days = page.getByLabel('Dormant after (days)');
    expect(await days.inputValue()).toBe('30');
    await days.fill('2');
    await days.press('Enter');
    const expected = names(await usage('dormant=true&dormant_days=2'));
    expect(expected).toEqual(['old']);
    await expect.poll(() => shownNames(page)).toEqual(expected);
    expect(
      await page.getByRole('row', { name: /old/ }).getByText('Dormant', { exact: true }).count(),
    ).toBe(1);
    await page.getByRole('checkbox', { name: 'Dormant only' }).uncheck();
    await expect
      .poll(async () => (await shownNames(page)).join(' | '))
      .toBe(names(await usage('dormant_days=2')).join(' | '));
    await page.getByLabel('Status').selectOption('revoked');
    await expect.poll(() => shownNames(page)).toEqual(['revoked']);
    await days.fill('0');
    await days.press('Enter');
    await page.getByText('A whole number of days from 1 to 3650.').waitFor();
  });

  it('rejects a bad key (401) with a message and stays on sign-in', async () => {
    const page = await browser.page();
    const errors = watchConsole(page);
    await page.goto(`${app.baseUrl}/admin/`);
    await page.getByLabel('API key', { exact: true }).fill(`${org.adminKey.slice(0, -4)}AAAA`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toContain('the API key is not valid');
    await page.getByLabel('API key', { exact: true }).waitFor();
    expect(await page.getByRole('button', { name: 'Sign out' }).count()).toBe(0);
    // The only console error is the browser's own line for the 401 answer.
    expect(errors.filter((e) => !e.includes('status of 401'))).toEqual([]);
  });

  it('tells a key without usage:read (403) which scope is missing', async () => {
    const page = await signIn(keys.narrow.key);
    const alert = page.getByRole('alert');
    await alert.waitFor();
    // The problem+json title and detail, as the API sent them.
    expect(await alert.textContent()).toContain('The key lacks a required scope');
    expect(await alert.textContent()).toContain('usage:read');
  });

  it('returns to sign-in with a message when the key is revoked while the page is open', async () => {
    const reader = await createKey(app.client, org, {
      name: 'short-lived',
      scopes: ['usage:read'],
    });
    const page = await signIn(reader.key);
    await shownNames(page);
    // Without keys:read the table stays, and says why the scopes are hidden.
    await page.getByText(/Scopes are not shown: .*keys:read/).waitFor();
    await app.client.delete(`/api/orgs/${org.orgId}/api-keys/${reader.id}`, { key: org.adminKey });
    // The next call answers 401: the page leaves (click, not check: the box is gone at once).
    await page.getByRole('checkbox', { name: 'Dormant only' }).click();
    await page.getByLabel('API key', { exact: true }).waitFor();
    expect(await page.getByRole('alert').first().textContent()).toContain('no longer valid');
  });

  it('links each key to its page, which links back to the same view of the table', async () => {
    const page = await signIn();
    await shownNames(page);
    const requests = page.getByRole('columnheader', { name: 'Requests' });
    await requests.getByRole('button').click();
    await expect.poll(() => requests.getAttribute('aria-sort')).toBe('descending');
    await page.getByRole('link', { name: 'busy', exact: true }).click();
    expect(page.url()).toBe(`${app.baseUrl}/admin/#/keys/${keys.busy.id}`);
    await page.getByRole('heading', { name: 'busy', level: 1 }).waitFor();
    expect(await page.getByText(keys.busy.body.prefix).count()).toBe(1);
    expect(await seriousViolations(page)).toEqual([]);
    await page.getByRole('link', { name: /Back to API keys/ }).click();
    await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
    expect(await requests.getAttribute('aria-sort')).toBe('descending');
    await expect
      .poll(async () => (await shownNames(page)).join(' | '))
      .toBe(names(await usage('sort=request_count&order=desc')).join(' | '));
  });

  it('passes an axe scan on the sign-in page and the keys page', async () => {
    const page = await browser.page();
    await page.goto(`${app.baseUrl}/admin/`);
    await page.getByLabel('API key', { exact: true }).waitFor();
    expect(await seriousViolations(page)).toEqual([]);
    const keysPage = await signIn();
    await shownNames(keysPage);
    expect(await seriousViolations(keysPage)).toEqual([]);
  });

  it('pages through 1,000 keys 50 at a time with scopes on every row', async () => {
    const big = await createOrg(app.client, 'Thousand');
    await insertBulkKeys(app.kt.backgroundDatabase.db, {
      orgId: big.orgId,
      names: Array.from({ length: 999 }, (_, i) => `bulk ${String(i).padStart(3, '0')}`),
      scopes: ['orders:read'],
    });
    // The admin key's own use puts it first (the only used key): wait until that is ingested,
    // so the API's pages below and the table's cannot be read on either side of it.
    await waitFor(async () => names(await usage('limit=1', big))[0] === 'admin', {
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    const page = await signIn(big.adminKey);
    const first = await usage('limit=50', big);
    await expect.poll(() => shownNames(page), { timeout: 10_000 }).toEqual(names(first));
    await page.getByRole('button', { name: 'Next page' }).click();
    const second = await usage(`limit=50&cursor=${encodeURIComponent(first.next_cursor)}`, big);
    await expect.poll(() => shownNames(page)).toEqual(names(second));
    // Scopes come from the key list (two pages of 500): every row has them.
    await expect
      .poll(() => page.locator('td.scopes').allTextContents())
      .toEqual(second.data.map(() => 'orders:read'));
    // By keyboard: back on page 1 the button is inert (aria-disabled) and keeps the focus.
    const previous = page.getByRole('button', { name: 'Previous page' });
    await tabTo(page, previous, { back: true });
    await page.keyboard.press('Enter');
    await expect.poll(() => shownNames(page), { timeout: 10_000 }).toEqual(names(first));
    expect(await previous.getAttribute('aria-disabled')).toBe('true');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Previous page');
    await page.keyboard.press('Enter');
    await expect.poll(() => shownNames(page), { timeout: 10_000 }).toEqual(names(first));
  });

  it('says a partial paste (the masked prefix) is not a key, without calling the API', async () => {
    const page = await browser.page();
    let calls = 0;
    page.on('request', (r) => void (r.url().includes('/api/') && calls++));
    await page.goto(`${app.baseUrl}/admin/`);
    await page.getByLabel('API key', { exact: true }).fill(`${org.adminKey.slice(0, 16)}…`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('Not a complete');
    expect(calls).toBe(0);
  });

  it('keeps a kept key when the server is down at reload, and resumes once it is back', async () => {
    const page = await signIn(org.adminKey, { keep: true });
    await page.route('**/api/keys/self', (route) =>
      route.fulfill({
        status: 503,
        contentType: 'application/problem+json',
        body: '{"status":503,"title":"Service unavailable","detail":"down","code":"service_unavailable"}',
      }),
    );
    await page.reload();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('Could not resume');
    expect(await page.evaluate('Object.values(sessionStorage)')).toEqual([org.adminKey]);
    await page.unroute('**/api/keys/self');
    await page.reload();
    await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
  });
});
