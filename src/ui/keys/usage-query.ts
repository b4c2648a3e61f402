/**
 * The API Keys page's view state as the org usage endpoint's query (SPEC §5.1). Pure: sorting,
 * filtering and paging are the API's job; the page only says what it wants.
 */

export const SORTS = ['last_used_at', 'request_count', 'name', 'created_at'] as const;
export type UsageSort = (typeof SORTS)[number];
export type SortOrder = 'asc' | 'desc';
export const STATUS_FILTERS = ['all', 'active', 'expired', 'revoked'] as const;
export type StatusFilter = (typeof STATUS_FILTERS)[number];

export const PAGE_SIZE = 50;
export const DORMANT_DAYS_MIN = 1;
export const DORMANT_DAYS_MAX = 3650;

export type UsageQuery = {
  sort: UsageSort;
  order: SortOrder;
  status: StatusFilter;
  dormantOnly: boolean;
  /** null: the server's default threshold (KEYTRAIL_DORMANT_DAYS). */
  dormantDays: number | null;
  /** The page's cursor; null for the first page. */
  cursor: string | null;
};

/** Names read A→Z; counts and times read biggest/newest first, as the API defaults. */
export const defaultOrder = (sort: UsageSort): SortOrder => (sort === 'name' ? 'asc' : 'desc');

export const DEFAULT_QUERY: UsageQuery = {
  sort: 'last_used_at',
  order: 'desc',
  status: 'all',
  dormantOnly: false,
  dormantDays: null,
  cursor: null,
};

/** The query string; sort and order always explicit, so a cursor always matches its sort. */
export function usageSearch(q: UsageQuery): string {
  const params = new URLSearchParams({ sort: q.sort, order: q.order, limit: String(PAGE_SIZE) });
  if (q.status !== 'all') params.set('status', q.status);
  if (q.dormantOnly) params.set('dormant', 'true');
  if (q.dormantDays !== null) params.set('dormant_days', String(q.dormantDays));
  if (q.cursor) params.set('cursor', q.cursor);
  return params.toString();
}

/** A click on a sortable header: the same column flips its order, another starts at its default. */
export function sortBy(q: UsageQuery, sort: UsageSort): UsageQuery {
  const order = q.sort === sort ? (q.order === 'asc' ? 'desc' : 'asc') : defaultOrder(sort);
  return { ...q, sort, order, cursor: null };
}

/** The threshold field's text as days, or null when it is not a whole number in range. */
export function parseDormantDays(text: string): number | null {
  if (!/^\s*\d+\s*$/.test(text)) return null;
  const days = Number(text);
  return days >= DORMANT_DAYS_MIN && days <= DORMANT_DAYS_MAX ? days : null;
}

/** The query plus the cursors of the pages before it: "Previous page" pops, "Next page" pushes. */
export type KeysView = { query: UsageQuery; previous: (string | null)[] };

export const INITIAL_VIEW: KeysView = { query: DEFAULT_QUERY, previous: [] };

/** Any query paged by cursor, with the cursors of the pages before it (keys, audit trail). */
export type PagedView<Q extends { cursor: string | null }> = {
  query: Q;
  previous: (string | null)[];
};

export const nextPage = <V extends PagedView<{ cursor: string | null }>>(
  view: V,
  cursor: string,
): V => ({
  ...view,
  query: { ...view.query, cursor },
  previous: [...view.previous, view.query.cursor],
});

export function previousPage<V extends PagedView<{ cursor: string | null }>>(view: V): V {
  if (view.previous.length === 0) return view;
  return {
    ...view,
    query: { ...view.query, cursor: view.previous.at(-1) ?? null },
    previous: view.previous.slice(0, -1),
  };
}

/** Any new sort or filter starts again at the first page: old cursors belong to the old query. */
export const refine = (view: KeysView, change: Partial<UsageQuery>): KeysView => ({
  query: { ...view.query, ...change, cursor: null },
  previous: [],
});
