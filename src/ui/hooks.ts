/** Small browser hooks shared by the pages. */
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from './api.ts';
import { parseRoute, type Route } from './route.ts';

/** The current hash route, updated on every `hashchange` (links, back and forward). */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return route;
}

/** Date.now(), refreshed every `intervalMs`, so relative times age while the page stays open. */
export function useNow(intervalMs: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

export type Loaded<T> = { data: T | null; error: ApiError | null; loading: boolean };

/** Any failure as the page shows it; a non-API error (a bug, a bad body) keeps its message. */
export const asApiError = (error: unknown): ApiError =>
  error instanceof ApiError
    ? error
    : new ApiError(
        0,
        'Unexpected error',
        error instanceof Error ? error.message : String(error),
        'client',
      );

/**
 * Runs `load` whenever `deps` change. The previous data stays on screen while the next loads
 * (no flash of an empty table on a sort click); a superseded request is aborted, so a slow
 * answer never overwrites a newer one.
 */
export function useApi<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<Loaded<T>>({ data: null, error: null, loading: true });
  useEffect(() => {
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    load(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ data, error: null, loading: false });
      },
      (error: unknown) => {
        if (!controller.signal.aborted)
          setState({ data: null, error: asApiError(error), loading: false });
      },
    );
    return () => controller.abort();
  }, deps);
  return state;
}

/** Sets the tab's title for the page on screen. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · keytrail admin`;
  }, [title]);
}
