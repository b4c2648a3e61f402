import { cleanText, ROUTE_MAX } from './usage.types.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NUMERIC = /^\d+$/;
const LONG_HEX = /^[0-9a-f]{16,}$/i;
// Long base62-ish tokens (ids, slugs with digits): letters AND digits, 16+ characters.
const LONG_TOKEN = /^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{16,}$/;
const MAX_SEGMENTS = 12;

/** Storable as the worker checks it (isStorableText): at most ROUTE_MAX code points. */
const cut = (route: string): string => cleanText(route, ROUTE_MAX);

function isIdLike(segment: string): boolean {
  return (
    NUMERIC.test(segment) ||
    UUID.test(segment) ||
    LONG_HEX.test(segment) ||
    LONG_TOKEN.test(segment)
  );
}

/**
 * A path without a router template (404s, reported events) → a bounded-cardinality route:
 * query string dropped, id-like segments replaced by `{id}`, depth and length capped.
 */
export function normalizePath(path: string): string {
  const bare = path.split(/[?#]/, 1)[0] ?? '';
  const segments = bare.split('/').filter((s) => s.length > 0);
  const kept = segments.slice(0, MAX_SEGMENTS).map((s) => {
    let decoded = s;
    try {
      decoded = decodeURIComponent(s);
    } catch {
      // keep the raw segment
    }
    return isIdLike(decoded) ? '{id}' : s;
  });
  if (segments.length > MAX_SEGMENTS) kept.push('…');
  return cut(`/${kept.join('/')}`);
}

/** The router's template when there is one (`/v1/orders/:id`), else the normalised path. */
export function routeOf(template: string | undefined, path: string): string {
  if (template) return cut(template);
  return normalizePath(path);
}
