/**
 * A key's limits in the admin page (SPEC §7, §11), in a real headless Chromium against a real
 * server and Postgres: set in the create dialog, shown on the key's page (the quota as a bar),
 * changed with "Edit limits" and enforced at once, the API's refusal of a bad address shown in
 * the dialog, keyboard-only use, an axe scan with the dialog open, no console error.
 */
import type { Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  focusedText,
  seriousViolations,
  shownNames,
  escapeThenEnter,
  signInWith,
  tabTo,
  watchConsole,
} from '../src/testing/admin-ui.ts';
import { chromiumAvailable, useBrowser } from '../src/testing/browser.ts';
import { createKey, createOrg, type TestOrg } from '../src/testing/factories.ts';
import { waitFor, type TestApp } from '../src/testing/harness.ts';
import { useTrackingApp } from './admin-app.ts';

describe.skipIf(!chromiumAvailable())('admin UI key limits', { timeout: 120_000 }, () => {
  const tracked = useTrackingApp();
  const browser = useBrowser();
  let app: TestApp;
  let org: TestOrg;
  let errors: string[];

  beforeAll(async () => {
    app = tracked.app;
    org = await createOrg(app.client, 'Limits');
  });

  const demo = async (key: string) => (await app.client.get('/v1/demo/orders/1', { key })).status;
  const keyNamed = async (name: string): Promise<any> =>
    (
      await app.client.get(`/api/orgs/${org.orgId}/api-keys?limit=500`, { key: org.adminKey })
    ).body.data.find((k: { name: string }) => k.name === name);

  async function signIn(): Promise<Page> {
    const page = await browser.page();
    errors = watchConsole(page);
    await signInWith(page, app.baseUrl, org.adminKey);
    await shownNames(page);
    return page;
  }

  /** The key's page, by its link (a reload would end the session: the key lives in the page). */
  async function openKey(page: Page, id: string): Promise<void> {
    await page.evaluate(`window.location.hash = ${JSON.stringify(`#/keys/${id}`)}`);
    await page.getByRole('button', { name: 'Edit limits' }).waitFor();
  }

  it('creates a key with limits, shows them on its page, and edits them there', async () => {
    const page = await signIn();
    await page.getByRole('button', { name: 'Create key' }).click();
    const dialog = page.getByRole('dialog', { name: 'Create key' });
    await dialog.getByLabel('Name').fill('metered');
    await dialog.getByText('Limits (optional)').click();
    await dialog.getByRole('button', { name: 'Add a limit' }).click();
    await dialog.getByLabel('Requests of limit 1').fill('100');
    await dialog.getByLabel('Window of limit 1').fill('1');
    await dialog.getByLabel('Window unit of limit 1').selectOption('minute');
    await dialog.getByLabel('A budget of requests').check();
    await dialog.getByLabel('Requests in the quota').fill('1000');
    await dialog.getByLabel('Refill', { exact: true }).selectOption('day');
    await dialog.getByLabel('Allowed IPs').fill('10.0.0.0/8\n127.0.0.1');
    await dialog.getByRole('button', { name: 'Create', exact: true }).click();
    await page.getByRole('dialog', { name: 'Key created' }).waitFor();
    const plaintext = await page.getByRole('dialog').locator('.secret code').textContent();
    await page.getByRole('dialog').getByRole('button', { name: 'Done' }).click();
    const created = await keyNamed('metered');
    expect(created).toMatchObject({
      rate_limits: [{ name: 'burst', limit: 100, window_seconds: 60 }],
      quota: { limit: 1000, refill: { interval: 'day', amount: 1000 } },
      allowed_ips: ['10.0.0.0/8', '127.0.0.1/32'],
    });
    for (let i = 0; i < 3; i++) expect(await demo(plaintext as string)).toBe(200);

    await openKey(page, created.id);
    await page.getByRole('heading', { name: 'metered', level: 1 }).waitFor();
    const fields = page.locator('dl.fields').first();
    await expect.poll(() => fields.textContent()).toContain('burst: 100 per minute');
    expect(await fields.textContent()).toContain('10.0.0.0/8, 127.0.0.1/32');
    // What the API said when the page read the key (idle credit may come back since): three
    // spent, so at most 997, and the text says the bar's figure.
    const meter = page.getByRole('meter', { name: 'Quota remaining' });
    const value = Number(await meter.getAttribute('value'));
    expect(value).toBeLessThanOrEqual(997);
    expect(Number(await meter.getAttribute('max'))).toBe(1000);
    expect(await fields.textContent()).toContain(`${value.toLocaleString('en-US')} of 1,000 left`);

    // Edit limits: what remains set to 2, no rate limit, any address.
    await page.getByRole('button', { name: 'Edit limits' }).click();
    const edit = page.getByRole('dialog', { name: 'Edit limits' });
    expect(await edit.getByLabel('Requests of limit 1').inputValue()).toBe('100');
    await edit.getByRole('button', { name: 'Remove limit 1' }).click();
    await edit.getByLabel('Set remaining to').fill('2');
    await edit.getByLabel('Allowed IPs').fill('');
    expect(await seriousViolations(page)).toEqual([]);
    await edit.getByRole('button', { name: 'Save limits' }).click();
    await edit.waitFor({ state: 'detached' });
    expect(await keyNamed('metered')).toMatchObject({
      rate_limits: [],
      quota: { limit: 1000, remaining: 2 },
      allowed_ips: [],
    });
    await expect.poll(async () => meter.getAttribute('value')).toBe('2');
    // Enforced on every instance within a second: two more, then the quota is spent.
    await waitFor(async () => (await demo(plaintext as string)) === 200);
    expect(await demo(plaintext as string)).toBe(200);
    await waitFor(async () => (await demo(plaintext as string)) === 429, { timeoutMs: 5_000 });
    expect(errors).toEqual([]);
  });

  it('shows the API refusal of a bad address in the dialog and saves nothing', async () => {
    const page = await signIn();
    const key = await keyNamed('metered');
    await openKey(page, key.id);
    await page.getByRole('button', { name: 'Edit limits' }).click();
    const edit = page.getByRole('dialog', { name: 'Edit limits' });
    await edit.getByLabel('Allowed IPs').fill('10.0.0.1/8');
    await edit.getByRole('button', { name: 'Save limits' }).click();
    await expect
      .poll(() => edit.getByRole('alert').textContent())
      .toContain('host bits set; did you mean 10.0.0.0/8');
    expect((await keyNamed('metered')).allowed_ips).toEqual([]);
    expect(errors.filter((e) => !e.includes('400'))).toEqual([]);
  });

  it('keeps Edit limits open when Escape and Enter come at once (the late close is not its own)', async () => {
    const key = await createKey(app.client, org, { name: 'escape and enter' });
    const page = await signIn();
    await openKey(page, key.id);
    const opener = page.getByRole('button', { name: 'Edit limits' });
    await tabTo(page, opener);
    const edit = page.getByRole('dialog', { name: 'Edit limits' });
    await escapeThenEnter(page, edit, 'Edit limits');
    expect(errors).toEqual([]);
  });

  it('edits limits from the keyboard alone, and gives the focus back on Escape', async () => {
    const page = await signIn();
    const key = await keyNamed('metered');
    await openKey(page, key.id);
    const opener = page.getByRole('button', { name: 'Edit limits' });
    await tabTo(page, opener);
    await page.keyboard.press('Enter');
    const edit = page.getByRole('dialog', { name: 'Edit limits' });
    await edit.waitFor();
    await page.keyboard.press('Escape');
    // Gone from the page, not only closed: the close has reached the page's state.
    await page.locator('dialog').waitFor({ state: 'detached' });
    await expect.poll(() => focusedText(page)).toBe('Edit limits');
    await page.keyboard.press('Enter');
    await edit.waitFor();
    // To "Add a limit", then into the new row's fields, all by Tab.
    await tabTo(page, edit.getByRole('button', { name: 'Add a limit' }));
    await page.keyboard.press('Enter');
    // The new row comes before the button: back by Shift+Tab.
    await tabTo(page, edit.getByLabel('Requests of limit 1'), { back: true });
    await page.keyboard.type('50');
    await tabTo(page, edit.getByRole('button', { name: 'Save limits' }));
    await page.keyboard.press('Enter');
    await edit.waitFor({ state: 'detached' });
    expect((await keyNamed('metered')).rate_limits).toEqual([
      { name: 'burst', limit: 50, window_seconds: 1 },
    ]);
    expect(errors).toEqual([]);
  });
});
