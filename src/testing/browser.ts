/**
 * Headless Debian Chromium for the admin UI tests, driven by playwright-core (no browser
 * download). Missing Chromium: the browser tests are skipped with one line from global setup,
 * except under CI=true, where global setup fails the run instead.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const chromiumAvailable = (): boolean => existsSync(CHROMIUM_PATH);

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ARGS });
}

/** One browser per test file; `page()` opens a fresh context (no storage shared between tests). */
export function useBrowser(): { browser: () => Browser; page: () => Promise<Page> } {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });
  const get = () => {
    if (!browser) throw new Error('browser not launched');
    return browser;
  };
  return {
    browser: get,
    page: async () => {
      const context = await get().newContext({ locale: 'en-US', timezoneId: 'UTC' });
      return context.newPage();
    },
  };
}
