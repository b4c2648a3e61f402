/**
 * Where the pasted key lives: in memory, held by the API client's closure (gone on reload or
 * sign-out), and in sessionStorage only when the admin ticks the box (this tab only, gone when
 * the tab closes). Never in localStorage, a cookie, a URL or the DOM; the server stores nothing.
 */

const STORAGE_NAME = 'keytrail.admin.key';

// sessionStorage throws in some privacy modes and sandboxed frames: the page then works with
// memory only rather than failing.
function storage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

/** The key this tab kept (the admin's choice at sign-in), to resume after a reload. */
export function storedKey(): string | null {
  try {
    return storage()?.getItem(STORAGE_NAME) ?? null;
  } catch {
    return null;
  }
}

export function keepKey(key: string, inTab: boolean): void {
  try {
    if (inTab) storage()?.setItem(STORAGE_NAME, key);
    else storage()?.removeItem(STORAGE_NAME);
  } catch {
    // Storage full or refused: the client's memory still holds the key for this page's life.
  }
}

export function forgetKey(): void {
  try {
    storage()?.removeItem(STORAGE_NAME);
  } catch {
    // Nothing stored, nothing to clear.
  }
}

/** "sk_live_abcd1234…": the display prefix the API shows, never more of the key. */
export function maskKey(key: string): string {
  const match = /^(sk_[a-z]+_)(.{0,8})/.exec(key);
  return match ? `${match[1]}${match[2]}…` : '…';
}
