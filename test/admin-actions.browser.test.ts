/**
 * The API Keys page's write actions in a real headless Chromium against a real server and
 * Postgres: create (the plaintext once, then gone), rotate with and without an overlap, revoke
 * with a reason (audited) and its cancel, client-side scope validation, the dialogs' focus and
 * names, an axe scan of an open dialog, and no console error under the CSP.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  focusedText,
  rowOf,
  seriousViolations,
  shownNames,
  escapeThenEnter,
  signInWith,
  tabTo,
  watchConsole,
} from '../src/testing/admin-ui.ts';
import { chromiumAvailable, useBrowser } from '../src/testing/browser.ts';
import { createKey, createOrg, reportEvents, type TestOrg } from '../src/testing/factories.ts';
import { useTestDatabase, waitFor, type TestApp } from '../src/testing/harness.ts';
import type { Worker } from '../workers/main.ts';
import { startTrackingApp } from './admin-app.ts';

const HOUR_MS = 3_600_000;

describe.skipIf(!chromiumAvailable())('admin UI write actions', { timeout: 120_000 }, () => {
  const dbUrl = useTestDatabase();
  const browser = useBrowser();
  let app: TestApp;
  let worker: Worker;
  let org: TestOrg;
  let errors: string[];

  beforeAll(async () => {
    ({ app, worker } = await startTrackingApp(dbUrl()));
    org = await createOrg(app.client, 'Actions');
  }, 90_000);
  afterAll(async () => {
    await worker?.stop();
    await app?.close();
  });

  const demo = async (key: string) => (await app.client.get('/v1/demo/orders/1', { key })).status;
  const apiKey = async (id: string) =>
    (await app.client.get(`/api/orgs/${org.orgId}/api-keys/${id}`, { key: org.adminKey })).body;
  const allKeys = async (): Promise<any[]> =>
    (await app.client.get(`/api/orgs/${org.orgId}/api-keys?limit=500`, { key: org.adminKey })).body
      .data;

  async function signIn(): Promise<Page> {
    const page = await browser.page();
    errors = watchConsole(page);
    await signInWith(page, app.baseUrl, org.adminKey);
    await shownNames(page);
    return page;
  }

  /** The plaintext shown in the open dialog, after it appeared. */
  async function shownPlaintext(page: Page, dialogName: string | RegExp): Promise<string> {
    const dialog = page.getByRole('dialog', { name: dialogName });
    await dialog.getByText('it will not be shown again').waitFor();
    const text = await dialog.locator('.secret code').textContent();
    expect(text).toMatch(/^sk_(live|test)_[0-9A-Za-z]+$/);
    return text!;
  }

  it('creates a key, shows its plaintext once with Copy, and drops it on Done', async () => {
    const page = await signIn();
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
    const opener = page.getByRole('button', { name: 'Create key' });
    await opener.click();
    const dialog = page.getByRole('dialog', { name: 'Create key' });
    await dialog.waitFor();
    expect(await page.evaluate('document.activeElement?.id')).toBe('create-name');
    await dialog.getByLabel('Name').fill('ci deploy');
    await dialog.getByLabel('Environment').selectOption('test');
    await dialog.getByLabel('Scopes').fill('orders:read, orders:write');
    await dialog.getByRole('button', { name: 'Create', exact: true }).click();

    const plaintext = await shownPlaintext(page, 'Key created');
    expect(plaintext.startsWith('sk_test_')).toBe(true);
    await page.getByRole('dialog').getByRole('button', { name: 'Copy' }).click();
    await page.getByText('Copied to the clipboard.').waitFor();
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(plaintext);
    expect(await demo(plaintext)).toBe(200);

    await page.getByRole('dialog').getByRole('button', { name: 'Done' }).click();
    await page.getByRole('dialog').waitFor({ state: 'detached' });
    await expect.poll(() => focusedText(page)).toBe('Create key');
    await expect.poll(() => shownNames(page)).toContain('ci deploy');
    expect(await page.content()).not.toContain(plaintext);
    expect(await page.evaluate('sessionStorage.length + localStorage.length')).toBe(0);
    expect(page.url()).not.toContain(plaintext);
    const created = (await allKeys()).find((k) => k.name === 'ci deploy');
    expect(created).toMatchObject({
      environment: 'test',
      scopes: ['orders:read', 'orders:write'],
      expires_at: null,
    });
    expect(errors).toEqual([]);
  });

  it('refuses an invalid scope in the dialog and creates nothing; Escape closes', async () => {
    const page = await signIn();
    let posts = 0;
    page.on('request', (r) => void (r.method() === 'POST' && posts++));
    const before = (await allKeys()).length;
    await page.getByRole('button', { name: 'Create key' }).click();
    const dialog = page.getByRole('dialog', { name: 'Create key' });
    await dialog.getByLabel('Name').fill('bad scopes');
    await dialog.getByLabel('Scopes').fill('orders:read Orders:Write');
    await dialog.getByRole('button', { name: 'Create', exact: true }).click();
    const alert = dialog.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toContain('Not a valid scope: Orders:Write');
    expect(await dialog.getByLabel('Scopes').getAttribute('aria-invalid')).toBe('true');
    expect(posts).toBe(0);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    await expect.poll(() => focusedText(page)).toBe('Create key');
    expect((await allKeys()).length).toBe(before);
    expect(errors).toEqual([]);
  });

  it('reopens a dialog closed by Escape and opened again at once by Enter, and keeps it open', async () => {
    const page = await signIn();
    const opener = page.getByRole('button', { name: 'Create key' });
    await tabTo(page, opener);
    const dialog = page.getByRole('dialog', { name: 'Create key' });
    await escapeThenEnter(page, dialog, 'Create key');
    expect(errors).toEqual([]);
  });

  it('shows the API problem in the dialog: a 400 with its errors, a 403 naming the scope', async () => {
    const page = await signIn();
    await page.getByRole('button', { name: 'Create key' }).click();
    const dialog = page.getByRole('dialog', { name: 'Create key' });
    await dialog.getByLabel('Expires').fill('2020-01-01T00:00');
    await dialog.getByLabel('Name').fill('   ');
    await dialog.getByRole('button', { name: 'Create', exact: true }).click();
    await dialog.getByText('The expiry must be in the future.').waitFor();
    expect(await dialog.getByLabel('Expires').getAttribute('aria-invalid')).toBe('true');
    // A blank name passes the browser's "required" and is the API's to refuse (400, errors).
    await dialog.getByLabel('Expires').fill('');
    await dialog.getByRole('button', { name: 'Create', exact: true }).click();
    const problem = dialog.getByRole('alert');
    await problem.waitFor();
    expect(await problem.locator('li').first().textContent()).toMatch(/^body\.name: /);
    expect((await allKeys()).some((k) => k.name.trim() === '')).toBe(false);

    const reader = await createKey(app.client, org, {
      name: 'reader',
      scopes: ['keys:read', 'usage:read'],
    });
    const readerPage = await browser.page();
    await signInWith(readerPage, app.baseUrl, reader.key);
    await readerPage.getByRole('button', { name: 'Create key' }).click();
    const readerDialog = readerPage.getByRole('dialog', { name: 'Create key' });
    await readerDialog.getByLabel('Name').fill('not allowed');
    await readerDialog.getByRole('button', { name: 'Create', exact: true }).click();
    await expect.poll(() => readerDialog.getByRole('alert').textContent()).toContain('keys:write');
    expect((await allKeys()).some((k) => k.name === 'not allowed')).toBe(false);
  });

  it('rotates with a 1 hour overlap: the old key keeps working until then, the new one too', async () => {
    const old = await createKey(app.client, org, { name: 'overlapping', scopes: ['orders:read'] });
    const page = await signIn();
    const row = page.getByRole('row', { name: /^overlapping / });
    await row.getByRole('button', { name: 'Rotate' }).click();
    const dialog = page.getByRole('dialog', { name: 'Rotate “overlapping”' });
    await dialog.getByRole('radio', { name: '1 hour' }).check();
    const requested = Date.now();
    await dialog.getByRole('button', { name: 'Rotate key' }).click();
    const plaintext = await shownPlaintext(page, 'Key “overlapping” rotated');
    await page.getByText(/The old key keeps working until/).waitFor();
    await page.getByRole('dialog').getByRole('button', { name: 'Done' }).click();
    await page.getByRole('dialog').waitFor({ state: 'detached' });
    await expect.poll(() => focusedText(page)).toBe('Rotate');
    expect(await page.content()).not.toContain(plaintext);
    expect(await demo(old.key)).toBe(200);
    expect(await demo(plaintext)).toBe(200);
    const expiresAt = Date.parse((await apiKey(old.id)).expires_at);
    expect(Math.abs(expiresAt - (requested + HOUR_MS))).toBeLessThan(60_000);
    await expect
      .poll(async () => (await shownNames(page)).filter((n) => n === 'overlapping'))
      .toHaveLength(2);

    // The new key's page shows the old key's use since the rotation, with a link to it.
    for (let i = 0; i < 2; i++) expect(await demo(old.key)).toBe(200);
    const successor = (await allKeys()).find((k) => k.rotated_from_id === old.id);
    await page.goto(`${app.baseUrl}/admin/#/keys/${successor.id}`);
    const finding = page.locator('.finding-warning');
    await expect
      .poll(
        async () => {
          await page.getByRole('button', { name: 'Refresh' }).click({ timeout: 2000 });
          await page.locator('.usage > [aria-busy="false"]').waitFor();
          return finding.textContent({ timeout: 500 }).catch(() => null);
        },
        { timeout: 20_000 },
      )
      .toMatch(
        /Old key still in use: 3 requests since the rotation, last (just now|\d+ minutes? ago)/,
      );
    await finding.getByRole('link', { name: /overlapping/ }).click();
    await page.waitForURL(`**/admin/#/keys/${old.id}`);
    await page.getByText('replaced by').waitFor();
    expect(errors).toEqual([]);
  });

  it('rotates with no overlap: the old key is refused at once (401)', async () => {
    const old = await createKey(app.client, org, { name: 'cut over', scopes: ['orders:read'] });
    const page = await signIn();
    await rowOf(page, 'cut over').getByRole('button', { name: 'Rotate' }).click();
    const dialog = page.getByRole('dialog', { name: 'Rotate “cut over”' });
    await dialog.getByRole('radio', { name: 'None (revoke now)' }).check();
    await dialog.getByRole('button', { name: 'Rotate key' }).click();
    const plaintext = await shownPlaintext(page, 'Key “cut over” rotated');
    await page.getByText('The old key was revoked.').waitFor();
    await page.getByRole('dialog').getByRole('button', { name: 'Done' }).click();
    expect(await demo(old.key)).toBe(401);
    expect(await demo(plaintext)).toBe(200);
    expect((await apiKey(old.id)).status).toBe('revoked');
    expect(errors).toEqual([]);
  });

  it('revokes with a reason: the key gets 401 and the audit trail has the reason', async () => {
    const key = await createKey(app.client, org, { name: 'leaver', scopes: ['orders:read'] });
    const page = await signIn();
    await rowOf(page, 'leaver').getByRole('button', { name: 'Revoke' }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke “leaver”?' });
    const reason = 'left the team & moved to ops?';
    await dialog.getByLabel('Reason').fill(reason);
    await dialog.getByRole('button', { name: 'Revoke key' }).click();
    await dialog.waitFor({ state: 'detached' });
    await rowOf(page, 'leaver').getByText('Revoked', { exact: true }).waitFor();
    expect(await rowOf(page, 'leaver').getByRole('button').count()).toBe(0);
    expect(await demo(key.key)).toBe(401);
    const audit = await app.client.get(`/api/orgs/${org.orgId}/audit-events`, {
      key: org.adminKey,
    });
    const revoked = audit.body.data.find(
      (e: any) => e.action === 'key.revoked' && e.target.id === key.id,
    );
    expect(revoked?.details).toMatchObject({ reason });
    expect(errors).toEqual([]);
  });

  it('Cancel revokes nothing and returns the focus to the row', async () => {
    const key = await createKey(app.client, org, { name: 'keeper', scopes: ['orders:read'] });
    const page = await signIn();
    await rowOf(page, 'keeper').getByRole('button', { name: 'Revoke' }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke “keeper”?' });
    await dialog.getByLabel('Reason').fill('not really');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
    await expect.poll(() => focusedText(page)).toBe('Revoke');
    expect((await apiKey(key.id)).status).toBe('active');
    expect(await demo(key.key)).toBe(200);
  });

  it('passes an axe scan with the create dialog open', async () => {
    const page = await signIn();
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByRole('dialog', { name: 'Create key' }).waitFor();
    expect(await seriousViolations(page)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('revokes the selected dormant keys one by one and reports what failed', async () => {
    const names = ['stale a', 'stale b', 'stale c'];
    const stale = await Promise.all(
      names.map((name) => createKey(app.client, org, { name, scopes: ['orders:read'] })),
    );
    // Last used three days ago: dormant at a 2-day threshold (reported events may be 7 days old).
    const occurred_at = new Date(Date.now() - 3 * 24 * HOUR_MS).toISOString();
    await reportEvents(
      app.client,
      org,
      org.adminKey,
      stale.map((k) => ({ key_id: k.id, occurred_at })),
    );
    await waitFor(
      async () => {
        const res = await app.client.get(
          `/api/orgs/${org.orgId}/api-keys/usage?dormant=true&dormant_days=2`,
          { key: org.adminKey },
        );
        return res.body.data.length === 3;
      },
      { timeoutMs: 20_000 },
    );
    const page = await signIn();
    const days = page.getByLabel('Dormant after (days)');
    await days.fill('2');
    await days.press('Enter');
    for (const name of names)
      await page.getByRole('checkbox', { name: `Select ${name} to revoke` }).check();
    // One of the three fails on the way: the others are still revoked, and the failure named.
    const failing = stale[2]!.id;
    await page.route(`**/api-keys/${failing}*`, (route) =>
      route.request().method() === 'DELETE'
        ? route.fulfill({
            status: 503,
            contentType: 'application/problem+json',
            body: '{"status":503,"title":"Service unavailable","detail":"try later","code":"unavailable"}',
          })
        : route.continue(),
    );
    await page.getByRole('button', { name: 'Revoke selected' }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke 3 keys' });
    await dialog.getByLabel('Reason').fill('dormant cleanup');
    await dialog.getByRole('button', { name: 'Revoke 3 keys' }).click();
    await dialog.getByText('2 revoked, 1 failed.').waitFor();
    expect(await dialog.getByText('stale c: try later').count()).toBe(1);
    await dialog.getByRole('button', { name: 'Done' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect(await page.getByRole('button', { name: 'Revoke selected' }).count()).toBe(0);
    expect(await Promise.all(stale.map((k) => demo(k.key)))).toEqual([401, 401, 200]);
    const audit = await app.client.get(`/api/orgs/${org.orgId}/audit-events`, {
      key: org.adminKey,
    });
    const revoked = audit.body.data.filter(
      (e: any) => e.action === 'key.revoked' && stale.some((k) => k.id === e.target.id),
    );
    expect(revoked.map((e: any) => e.details.reason)).toEqual([
      'dormant cleanup',
      'dormant cleanup',
    ]);
    // The browser's own line for the injected 503 is the only console error.
    expect(errors.filter((e) => !e.includes('status of 503'))).toEqual([]);
  });
});
