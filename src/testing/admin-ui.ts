/**
 * Helpers for the admin UI's browser tests: sign-in, console watch, settled rows, axe.
 */
import AxeBuilder from '@axe-core/playwright';
import type { Locator, Page } from 'playwright-core';
import { expect } from 'vitest';

/** Console errors and uncaught exceptions of a page (a CSP violation is a console error). */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return errors;
}

/** Pastes `key` on the sign-in page of a fresh page and waits for the API Keys page. */
export async function signInWith(page: Page, baseUrl: string, key: string): Promise<Page> {
  await page.goto(`${baseUrl}/admin/`);
  await page.getByLabel('API key', { exact: true }).fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
  return page;
}

/** The names in the table once it has settled (not busy), in the order shown. */
export async function shownNames(page: Page): Promise<string[]> {
  await page.locator('table[aria-busy="false"]').waitFor();
  return page.getByRole('rowheader').allTextContents();
}

/** The table row of the key linked under this exact name. */
export const rowOf = (page: Page, name: string) =>
  page.getByRole('row').filter({ has: page.getByRole('link', { name, exact: true }) });

/** The text of the focused element. */
export const focusedText = (page: Page): Promise<string | null> =>
  page.evaluate<string | null>('document.activeElement?.textContent ?? null');

/**
 * Presses Tab (Shift+Tab with `back`) until `target` has the focus, as a keyboard user reaches
 * it: fails if it is not reached within `max` presses (not focusable, or out of the tab order).
 */
export async function tabTo(
  page: Page,
  target: Locator,
  o: { back?: boolean; max?: number } = {},
): Promise<void> {
  await target.waitFor();
  const max = o.max ?? 60;
  // The element's own view of the focus (this file is compiled without the DOM's types).
  const focused = () => target.evaluate((el) => el === el.ownerDocument.activeElement);
  for (let i = 0; i < max; i++) {
    if (await focused()) return;
    await page.keyboard.press(o.back ? 'Shift+Tab' : 'Tab');
  }
  if (await focused()) return;
  throw new Error(
    `not reached by ${max} presses of ${o.back ? 'Shift+Tab' : 'Tab'}: ${String(target)}`,
  );
}

/**
 * Counts the native 'close' events of the page's dialogs from now on. A listener on each dialog
 * itself (added as dialogs appear): the event of a dialog already removed from the page reaches
 * no ancestor. Returns the reader of the count.
 */
export async function dialogCloses(page: Page): Promise<() => Promise<number>> {
  await page.evaluate(
    `window.__dialogCloses = 0;
     const watch = () => document.querySelectorAll('dialog').forEach((d) => {
       if (d.__closesWatched) return;
       d.__closesWatched = true;
       d.addEventListener('close', () => { window.__dialogCloses += 1; });
     });
     watch();
     new MutationObserver(watch).observe(document.body, { childList: true, subtree: true });`,
  );
  return () => page.evaluate<number>('window.__dialogCloses');
}

/**
 * From the focused `opener` (a button named `openerName`), `rounds` times: Enter opens `dialog`;
 * then Escape and Enter at once, so its late native 'close' event comes after the opener opened
 * it again. The dialog must stay open, then close on Escape and give the focus back.
 */
export async function escapeThenEnter(
  page: Page,
  dialog: Locator,
  openerName: string,
  rounds = 5,
): Promise<void> {
  const closes = await dialogCloses(page);
  for (let round = 0; round < rounds; round++) {
    await page.keyboard.press('Enter');
    await dialog.waitFor();
    const before = await closes();
    await page.keyboard.press('Escape');
    await page.keyboard.press('Enter');
    // The first dialog's late 'close' event has come: the one opened again is still open.
    await expect.poll(closes).toBeGreaterThan(before);
    await dialog.waitFor();
    expect(await dialog.evaluate((d) => (d as unknown as { open: boolean }).open)).toBe(true);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    await expect.poll(() => focusedText(page)).toBe(openerName);
  }
}

export async function seriousViolations(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page }).analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}
