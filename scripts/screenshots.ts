/**
 * `make screenshots`: the admin page's screenshots in docs/screenshots, taken from a freshly
 * seeded Demo org (a throwaway embedded cluster, its own data directory) in headless Chromium.
 * Look at them before committing them: they are what docs/admin.md shows.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { openRuntime, startServer } from '../src/main.ts';
import { buildUi } from '../src/ui/build.ts';
import { launchChromium } from '../src/testing/browser.ts';
import { startWorker } from '../workers/main.ts';

const OUT = path.resolve(import.meta.dirname, '..', 'docs', 'screenshots');
const VIEWPORT = { width: 1280, height: 860 };

async function waitForIngest(baseUrl: string, orgId: string, key: string, events: number) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const res = await fetch(`${baseUrl}/api/orgs/${orgId}/api-keys/usage?limit=1`, {
      headers: { authorization: `Bearer ${key}` },
    });
    const body = (await res.json()) as { summary: { total_requests: number } };
    // Denied attempts are not requests: most, not all, of the events become requests.
    if (body.summary.total_requests >= events * 0.95) return;
    if (Date.now() > deadline) throw new Error('the sample usage was not ingested in 2 minutes');
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The key watch that follows the sample usage's ingest has flagged the demo's spike. */
async function waitForSpikeFinding(baseUrl: string, orgId: string, key: string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await fetch(`${baseUrl}/api/orgs/${orgId}/findings`, {
      headers: { authorization: `Bearer ${key}` },
    });
    const body = (await res.json()) as { data: { kind: string }[] };
    if (body.data.some((f) => f.kind === 'spike')) return;
    if (Date.now() > deadline) throw new Error('no spike in the findings after a minute');
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.waitForLoadState('networkidle');
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
  process.stdout.write(`docs/screenshots/${name}.png\n`);
}

type Key = { id: string; name: string; rotated_from_id: string | null };

async function keysOf(baseUrl: string, orgId: string, key: string): Promise<Key[]> {
  const res = await fetch(`${baseUrl}/api/orgs/${orgId}/api-keys?limit=100`, {
    headers: { authorization: `Bearer ${key}` },
  });
  return ((await res.json()) as { data: Key[] }).data;
}

/** Opens a key's page by its link's target, and waits for its usage. */
async function openKey(page: Page, key: Key | undefined): Promise<void> {
  if (!key) throw new Error('no such demo key');
  await page.evaluate(`location.hash = ${JSON.stringify(`#/keys/${key.id}`)}`);
  await page.getByRole('heading', { name: key.name, level: 1 }).waitFor();
  await page.locator('.usage > [aria-busy="false"]').waitFor();
}

const scratch = await mkdtemp(path.join(tmpdir(), 'keytrail-screenshots-'));
await buildUi();
const runtime = await openRuntime({
  ...process.env,
  DATABASE_URL: '',
  PORT: '0',
  HOST: '127.0.0.1',
  KEYTRAIL_DATA_DIR: path.join(scratch, 'data'),
  KEYTRAIL_LOG_LEVEL: 'warn',
});
const server = await startServer(runtime, { startWorker });
const browser = await launchChromium();
try {
  const admin = /admin key \(shown once, store it now\): (\S+)/.exec(server.banner)?.[1];
  const orgId = /Demo org created: (\S+)/.exec(server.banner)?.[1];
  const events = Number(/([\d,]+) usage events/.exec(server.banner)?.[1]?.replaceAll(',', ''));
  if (!admin || !orgId || !events) throw new Error(`no seeded Demo org in:\n${server.banner}`);
  await waitForIngest(server.baseUrl, orgId, admin, events);
  await waitForSpikeFinding(server.baseUrl, orgId, admin);

  const context = await browser.newContext({
    viewport: VIEWPORT,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  const page = await context.newPage();
  await page.goto(`${server.baseUrl}/admin/`);
  await shoot(page, 'sign-in');
  await page.getByLabel('API key', { exact: true }).fill(admin);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
  await page.locator('table[aria-busy="false"]').waitFor();
  await shoot(page, 'api-keys');
  // The findings and the org at a glance, opened.
  await page.getByText(/^Findings: /).click();
  await page.getByText('The org at a glance').click();
  await page.getByRole('heading', { name: 'Busiest keys, last 30 days' }).waitFor();
  await shoot(page, 'api-keys-findings');
  const keys = await keysOf(server.baseUrl, orgId, admin);
  const named = (name: string) => keys.find((k) => k.name === name && !k.rotated_from_id);
  // The rotated key (the newer "billing-sync") shows its old key still in use.
  await openKey(
    page,
    keys.find((k) => k.rotated_from_id),
  );
  await shoot(page, 'key-rotated');
  await openKey(page, named('checkout-service'));
  await page.getByLabel('7 days').check();
  await page.locator('.usage > [aria-busy="false"]').waitFor();
  await shoot(page, 'key-page');
  await page.getByRole('button', { name: 'Edit limits' }).click();
  const limits = page.getByRole('dialog', { name: 'Edit limits' });
  await limits.getByRole('button', { name: 'Add a limit' }).click();
  await limits.getByLabel('Requests of limit 1').fill('100');
  await limits.getByLabel('A budget of requests').check();
  await limits.getByLabel('Requests in the quota').fill('1000000');
  await limits.getByLabel('Refill', { exact: true }).selectOption('month');
  await limits.getByLabel('Allowed IPs').fill('203.0.113.0/24');
  await shoot(page, 'edit-limits');
  await limits.getByRole('button', { name: 'Cancel' }).click();
  await openKey(page, named('partner-acme'));
  await shoot(page, 'key-revoked');
  await page.evaluate(`location.hash = '#/audit'`);
  await page.getByRole('heading', { name: 'Audit', level: 1 }).waitFor();
  await shoot(page, 'audit');
  await page.evaluate(`location.hash = '#/policies'`);
  await page.getByRole('button', { name: 'Save policy' }).waitFor();
  // On (notify), so the preview has the Demo org's dormant keys to show.
  await page.getByLabel('Enabled').check();
  await page.getByRole('button', { name: 'Save policy' }).click();
  await page.getByRole('status').filter({ hasText: 'Policy saved.' }).waitFor();
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.getByText('A run now would').waitFor();
  await shoot(page, 'policies');
  await page.evaluate(`location.hash = '#/webhooks'`);
  await page.getByRole('heading', { name: 'Webhooks', level: 1 }).waitFor();
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.getByLabel('URL').fill('https://hooks.example.com/keytrail');
  await page.getByLabel('Description').fill('SIEM');
  await shoot(page, 'webhooks-add');
  await context.close();
} finally {
  await browser.close();
  await server.stop();
  await rm(scratch, { recursive: true, force: true });
}
