import { describe, expect, it } from 'vitest';
import {
  DEFAULT_QUERY,
  INITIAL_VIEW,
  nextPage,
  parseDormantDays,
  previousPage,
  refine,
  sortBy,
  usageSearch,
} from './usage-query.ts';

const params = (search: string) => Object.fromEntries(new URLSearchParams(search));

describe('usageSearch', () => {
  it('asks for last used, newest first, 50 a page by default', () => {
    expect(params(usageSearch(DEFAULT_QUERY))).toEqual({
      sort: 'last_used_at',
      order: 'desc',
      limit: '50',
    });
  });

  it('sends the filters and the cursor the API knows, and leaves "all" out', () => {
    const q = {
      ...DEFAULT_QUERY,
      status: 'revoked' as const,
      dormantOnly: true,
      dormantDays: 90,
      cursor: 'abc',
    };
    expect(params(usageSearch(q))).toEqual({
      sort: 'last_used_at',
      order: 'desc',
      limit: '50',
      status: 'revoked',
      dormant: 'true',
      dormant_days: '90',
      cursor: 'abc',
    });
  });
});

describe('sortBy', () => {
  it('starts a new column at its natural order: names A→Z, numbers and times largest first', () => {
    expect(sortBy(DEFAULT_QUERY, 'name')).toMatchObject({ sort: 'name', order: 'asc' });
    expect(sortBy(DEFAULT_QUERY, 'request_count')).toMatchObject({ order: 'desc' });
    expect(sortBy(DEFAULT_QUERY, 'created_at')).toMatchObject({ order: 'desc' });
  });

  it('flips the order on a second click and drops the cursor', () => {
    const q = { ...DEFAULT_QUERY, cursor: 'c1' };
    expect(sortBy(q, 'last_used_at')).toMatchObject({ order: 'asc', cursor: null });
    expect(sortBy(sortBy(q, 'last_used_at'), 'last_used_at')).toMatchObject({ order: 'desc' });
  });
});

describe('paging', () => {
  it('walks forward and back through a stack of cursors', () => {
    const two = nextPage(INITIAL_VIEW, 'c1');
    const three = nextPage(two, 'c2');
    expect(three.query.cursor).toBe('c2');
    expect(previousPage(three)).toEqual(two);
    expect(previousPage(two)).toEqual(INITIAL_VIEW);
    expect(previousPage(INITIAL_VIEW)).toBe(INITIAL_VIEW);
  });

  it('returns to the first page when a filter changes', () => {
    const three = nextPage(nextPage(INITIAL_VIEW, 'c1'), 'c2');
    expect(refine(three, { dormantOnly: true })).toEqual({
      query: { ...DEFAULT_QUERY, dormantOnly: true },
      previous: [],
    });
  });
});

describe('parseDormantDays', () => {
  it.each([
    ['1', 1],
    ['30', 30],
    [' 3650 ', 3650],
    ['0', null],
    ['3651', null],
    ['', null],
    ['1.5', null],
    ['-3', null],
    ['1e3', null],
  ])('"%s" → %s', (text, days) => {
    expect(parseDormantDays(text)).toBe(days);
  });
});
