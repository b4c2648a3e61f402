/**
 * The Webhooks page in a real headless Chromium against a real server, worker and Postgres, with
 * a local receiver that checks signatures: "Add endpoint" (the secret shown once), an unsafe URL
 * refused with the API's reason, "Send test event" delivered and logged, "Resend", disable and
 * enable, "Rotate secret", delete with a confirm, keyboard use, an axe scan, no console error.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../workers/main.ts';
import {
  focusedText,
  seriousViolations,
  signInWith,
  tabTo,
  watchConsole,
} from '../src/testing/admin-ui.ts';
import { chromiumAvailable, useBrowser } from '../src/testing/browser.ts';
import { createOrg, type TestOrg } from '../src/testing/factories.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../src/testing/harness.ts';
import { startReceiver, type Receiver } from '../src/testing/receiver.ts';
import { verifyPayload, webhookTestConfig } from '../src/testing/webhooks.ts';

describe.skipIf(!chromiumAvailable())('admin UI webhooks', { timeout: 120_000 }, () => {
  const dbUrl = useTestDatabase();
  const browser = useBrowser();
  let app: TestApp;
  let worker: Worker;
  let org: TestOrg;
  let receiver: Receiver;
  let errors: string[];

  beforeAll(async () => {
    app = await startTestApp(dbUrl(), { config: webhookTestConfig });
    worker = await startWorker(app.kt);
    org = await createOrg(app.client, 'Webhooks');
    receiver = await startReceiver();
  }, 90_000);
  afterAll(async () => {
    await receiver?.close();
    await worker?.stop();
    await app?.close();
  });

  const hooks = async (): Promise<any[]> =>
    (await app.client.get(`/api/orgs/${org.orgId}/webhooks`, { key: org.adminKey })).body.data;

  /** Test events received signed by `secret`: at-least-once delivery, so never an exact count. */
  const tests = (secret: string) =>
    receiver.received.filter((r) => {
      try {
        return verifyPayload(secret, r).type === 'webhook.test';
      } catch {
        return false;
      }
    });

  async function openWebhooks(): Promise<Page> {
    const page = await browser.page();
    errors = watchConsole(page);
    await signInWith(page, app.baseUrl, org.adminKey);
    await page.getByRole('link', { name: 'Webhooks', exact: true }).click();
    await page.getByRole('heading', { name: 'Webhooks', level: 1 }).waitFor();
    return page;
  }

  it('adds an endpoint, shows its secret once, and delivers a signed test event it logs', async () => {
    const page = await openWebhooks();
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    const add = page.getByRole('dialog', { name: 'Add endpoint' });
    await add.getByLabel('URL').fill(receiver.url);
    await add.getByLabel('key.spike').check();
    await add.getByLabel('Description').fill('SIEM');
    expect(await seriousViolations(page)).toEqual([]);
    await add.getByRole('button', { name: 'Add endpoint' }).click();
    const shown = page.getByRole('dialog', { name: 'Endpoint added' });
    await shown.getByText('it will not be shown again').waitFor();
    const secret = (await shown.locator('.secret code').textContent()) as string;
    expect(secret).toMatch(/^whsec_/);
    await shown.getByRole('button', { name: 'Done' }).click();
    await shown.waitFor({ state: 'detached' });
    expect(await page.content()).not.toContain(secret);
    const [hook] = await hooks();
    expect(hook).toMatchObject({
      url: receiver.url,
      description: 'SIEM',
      event_types: ['key.revoked', 'key.revoked_key_used', 'key.spike'],
      enabled: true,
    });

    const section = page.getByRole('region', { name: `Endpoint ${receiver.url}` });
    await section.getByRole('button', { name: 'Send test event' }).click();
    await waitFor(() => tests(secret).length >= 1, { timeoutMs: 20_000 });
    await section.getByRole('button', { name: 'Deliveries' }).click();
    const log = section.getByRole('table', { name: `Deliveries to ${receiver.url}` });
    // The log follows a delivery on its way until it settles.
    await expect
      .poll(() => log.getByRole('row').nth(1).textContent(), { timeout: 20_000 })
      .toContain('succeeded');
    expect(await log.getByRole('row').nth(1).textContent()).toContain('webhook.test');
    expect(await log.getByRole('row').nth(1).textContent()).toContain('HTTP 200');
    const before = tests(secret).length;
    await log.getByRole('button', { name: 'Resend webhook.test' }).click();
    await waitFor(() => tests(secret).length > before, { timeoutMs: 20_000 });
    const ids = new Set(tests(secret).map((r) => r.headers['webhook-id']));
    expect(ids.size).toBe(1);
    expect(await seriousViolations(page)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('refuses an unsafe URL with the API reason, and adds nothing', async () => {
    const page = await openWebhooks();
    const before = (await hooks()).length;
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    const add = page.getByRole('dialog', { name: 'Add endpoint' });
    await add.getByLabel('URL').fill('https://10.1.2.3/hook');
    await add.getByRole('button', { name: 'Add endpoint' }).click();
    const refused = await app.client.post(`/api/orgs/${org.orgId}/webhooks`, {
      key: org.adminKey,
      body: { url: 'https://10.1.2.3/hook', event_types: ['key.revoked'] },
    });
    expect(refused.status).toBe(400);
    await expect.poll(() => add.getByRole('alert').textContent()).toContain(refused.body.detail);
    expect((await hooks()).length).toBe(before);
    expect(errors.filter((e) => !e.includes('400'))).toEqual([]);
  });

  it('disables, enables, rotates the secret of, deletes and adds an endpoint, from the keyboard alone', async () => {
    const page = await openWebhooks();
    const section = page.getByRole('region', { name: `Endpoint ${receiver.url}` });
    await tabTo(page, section.getByRole('button', { name: 'Disable' }));
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: 'Endpoint disabled.' }).waitFor();
    expect((await hooks())[0]).toMatchObject({ enabled: false });
    // Enable replaces Disable: Tab to it wherever the focus went.
    await tabTo(page, section.getByRole('button', { name: 'Enable' }));
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: 'Endpoint enabled.' }).waitFor();
    expect((await hooks())[0]).toMatchObject({ enabled: true });

    const rotate = section.getByRole('button', { name: 'Rotate secret' });
    await tabTo(page, rotate);
    await page.keyboard.press('Enter');
    const confirm = page.getByRole('dialog', { name: 'Rotate secret' });
    await confirm.waitFor();
    await page.keyboard.press('Escape');
    // Gone from the page, not only closed: the close has reached the page's state.
    await page.locator('dialog').waitFor({ state: 'detached' });
    await expect.poll(() => focusedText(page)).toBe('Rotate secret');
    await page.keyboard.press('Enter');
    // The key that opened it does not confirm it: Cancel has the focus.
    await confirm.waitFor();
    await expect.poll(() => focusedText(page)).toBe('Cancel');
    await tabTo(page, confirm.getByRole('button', { name: 'Rotate secret' }));
    await page.keyboard.press('Enter');
    const rotated = page.getByRole('dialog', { name: 'Secret rotated' });
    await rotated.getByText('it will not be shown again').waitFor();
    const secret = (await rotated.locator('.secret code').textContent()) as string;
    expect(secret).toMatch(/^whsec_/);
    await tabTo(page, rotated.getByRole('button', { name: 'Done' }));
    await page.keyboard.press('Enter');
    await rotated.waitFor({ state: 'detached' });
    const signedBefore = tests(secret).length;
    await tabTo(page, section.getByRole('button', { name: 'Send test event' }));
    await page.keyboard.press('Enter');
    await waitFor(() => tests(secret).length > signedBefore, { timeoutMs: 20_000 });

    await tabTo(page, section.getByRole('button', { name: 'Delete' }));
    await page.keyboard.press('Enter');
    const del = page.getByRole('dialog', { name: 'Delete endpoint' });
    await tabTo(page, del.getByRole('button', { name: 'Delete endpoint' }));
    await page.keyboard.press('Enter');
    await del.waitFor({ state: 'detached' });
    expect(await hooks()).toEqual([]);
    await page.getByText('No endpoint yet.').waitFor();

    // And one added again, by keyboard alone.
    await tabTo(page, page.getByRole('button', { name: 'Add endpoint' }));
    await page.keyboard.press('Enter');
    const add = page.getByRole('dialog', { name: 'Add endpoint' });
    await tabTo(page, add.getByLabel('URL'));
    await page.keyboard.type(receiver.url);
    await tabTo(page, add.getByLabel('key.created'));
    await page.keyboard.press('Space');
    await tabTo(page, add.getByRole('button', { name: 'Add endpoint' }));
    await page.keyboard.press('Enter');
    const shown = page.getByRole('dialog', { name: 'Endpoint added' });
    await tabTo(page, shown.getByRole('button', { name: 'Done' }));
    await page.keyboard.press('Enter');
    await shown.waitFor({ state: 'detached' });
    expect(await hooks()).toEqual([
      expect.objectContaining({
        url: receiver.url,
        event_types: ['key.revoked', 'key.revoked_key_used', 'key.created'],
      }),
    ]);
    expect(errors).toEqual([]);
  });
});
