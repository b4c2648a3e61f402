/**
 * The Policies page in a real headless Chromium against a real server and Postgres: the
 * dormant-key policy saved as the API then returns it, a preview naming exactly the keys the API
 * previews, the last run's result, the org's default rate limits, refusals shown as the API
 * words them, keyboard-only use, an axe scan and no console error under the CSP.
 */
import { sql } from 'kysely';
import type { Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { seriousViolations, signInWith, tabTo, watchConsole } from '../src/testing/admin-ui.ts';
import { chromiumAvailable, useBrowser } from '../src/testing/browser.ts';
import { createKey, createOrg, type TestOrg } from '../src/testing/factories.ts';
import type { TestApp } from '../src/testing/harness.ts';
import { useTrackingApp } from './admin-app.ts';

describe.skipIf(!chromiumAvailable())('admin UI policies', { timeout: 120_000 }, () => {
  const tracked = useTrackingApp();
  const browser = useBrowser();
  let app: TestApp;
  let org: TestOrg;
  let errors: string[];

  beforeAll(async () => {
    app = tracked.app;
    org = await createOrg(app.client, 'Policies');
  });

  const api = (path: string, key = org.adminKey) =>
    app.client.get(`/api/orgs/${org.orgId}/policies/${path}`, { key });

  async function openPolicies(key = org.adminKey): Promise<Page> {
    const page = await browser.page();
    errors = watchConsole(page);
    await signInWith(page, app.baseUrl, key);
    await page.getByRole('link', { name: 'Policies', exact: true }).click();
    await page.getByRole('heading', { name: 'Policies', level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Save policy' }).waitFor();
    return page;
  }

  it('saves the dormant-key policy as the API then returns it, and previews exactly its keys', async () => {
    const idle = await createKey(app.client, org, { name: 'idle live' });
    await createKey(app.client, org, { name: 'idle test', environment: 'test' });
    await createKey(app.client, org, { name: 'billing', scopes: ['billing:admin'] });
    await sql`update api_keys set created_at = now() - interval '10 days'
      where org_id = ${org.orgId} and id <> ${org.adminKeyId}`.execute(app.kt.database.db);

    const page = await openPolicies();
    expect(await page.getByLabel('Enabled').isChecked()).toBe(false);
    await page.getByLabel('Enabled').check();
    await page.getByLabel('Dormant after (days)').fill('7');
    await page.getByLabel('Revoke the key').check();
    await page.getByLabel('test keys').check();
    await page.getByLabel('Keys holding any of these scopes').fill('billing:admin');
    await page.getByRole('button', { name: 'Save policy' }).click();
    await page.getByRole('status').filter({ hasText: 'Policy saved.' }).waitFor();
    expect((await api('dormant-keys')).body).toMatchObject({
      enabled: true,
      after_days: 7,
      action: 'revoke',
      exclude_environments: ['test'],
      exclude_scopes: ['billing:admin'],
      last_run: null,
    });
    await expect
      .poll(() => page.locator('.last-run').textContent())
      .toContain('The policy has not run yet.');

    await page.getByRole('button', { name: 'Preview' }).click();
    const table = page.getByRole('table', { name: 'Keys a run now acts on' });
    await table.waitFor();
    const preview = (await api('dormant-keys/preview')).body;
    expect(preview.keys.map((k: { key_id: string }) => k.key_id)).toEqual([idle.id]);
    const links = table.getByRole('link');
    expect(await links.allTextContents()).toEqual(['idle live']);
    expect(await links.first().getAttribute('href')).toBe(`#/keys/${idle.id}`);
    expect(await page.getByText('A run now would').textContent()).toContain('would revoke 1 key');
    expect(await seriousViolations(page)).toEqual([]);
    expect(errors).toEqual([]);

    // The daily run, then the page says what it did.
    await app.kt.dormantPolicies.runAll();
    const again = await openPolicies();
    await expect.poll(() => again.locator('.last-run').textContent()).toContain('Revoked 1 key');
    expect(await again.locator('.last-run time').getAttribute('datetime')).toBe(
      (await api('dormant-keys')).body.last_run.at,
    );
  });

  it('shows the API refusal of a key without keys:write, and a bad scope before sending', async () => {
    const reader = await createKey(app.client, org, { name: 'reader', scopes: ['keys:read'] });
    const page = await openPolicies(reader.key);
    await page.getByLabel('Keys holding any of these scopes').fill('Not A Scope');
    await page.getByRole('button', { name: 'Save policy' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('Not a valid scope');
    await page.getByLabel('Keys holding any of these scopes').fill('');
    await page.getByRole('button', { name: 'Save policy' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('keys:write');
    expect(errors.filter((e) => !e.includes('403'))).toEqual([]);
  });

  it('sets the org default rate limits, and refuses a bad row naming it', async () => {
    const page = await openPolicies();
    await page.getByRole('button', { name: 'Add a limit' }).click();
    // High: the default applies to the admin key of this very page too.
    await page.getByLabel('Requests of limit 1').fill('500');
    await page.getByLabel('Window of limit 1').fill('1');
    await page.getByRole('button', { name: 'Add a limit' }).click();
    await page.getByLabel('Name of limit 2').fill('burst');
    await page.getByLabel('Requests of limit 2').fill('100000');
    await page.getByRole('button', { name: 'Save default limits' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('Limit 2');
    expect((await api('rate-limits')).body.rate_limits).toEqual([]);

    await page.getByLabel('Name of limit 2').fill('hourly');
    await page.getByLabel('Window of limit 2').fill('1');
    await page.getByLabel('Window unit of limit 2').selectOption('hour');
    await page.getByRole('button', { name: 'Save default limits' }).click();
    await page.getByRole('status').filter({ hasText: 'Default rate limits saved.' }).waitFor();
    expect((await api('rate-limits')).body.rate_limits).toEqual([
      { name: 'burst', limit: 500, window_seconds: 1 },
      { name: 'hourly', limit: 100_000, window_seconds: 3600 },
    ]);
    // Reloaded, the rows read back in their units.
    const again = await openPolicies();
    await again.getByLabel('Requests of limit 2').waitFor();
    expect(await again.getByLabel('Window unit of limit 2').inputValue()).toBe('hour');
    await again.getByRole('button', { name: 'Remove limit 2' }).click();
    await again.getByRole('button', { name: 'Remove limit 1' }).click();
    await again.getByRole('button', { name: 'Save default limits' }).click();
    await again.getByRole('status').filter({ hasText: 'Default rate limits saved.' }).waitFor();
    expect((await api('rate-limits')).body.rate_limits).toEqual([]);
    expect(await seriousViolations(again)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('works from the keyboard alone', async () => {
    const page = await openPolicies();
    await tabTo(page, page.getByLabel('Dormant after (days)'));
    await page.keyboard.press('Control+A');
    await page.keyboard.type('45');
    // Tab to the action's radio group, then an arrow key moves the choice.
    await page.keyboard.press('Tab');
    const checked = async () =>
      page.locator('input[name="dormant-action"]:checked').getAttribute('value');
    const before = await checked();
    await page.keyboard.press('ArrowDown');
    expect(await checked()).not.toBe(before);
    await tabTo(page, page.getByRole('button', { name: 'Save policy' }));
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: 'Policy saved.' }).waitFor();
    expect((await api('dormant-keys')).body).toMatchObject({
      after_days: 45,
      action: before === 'revoke' ? 'notify' : 'revoke',
    });
    expect(errors).toEqual([]);
  });
});
